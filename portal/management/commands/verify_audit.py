from django.core.management.base import BaseCommand, CommandError

from portal.audit import verify_chain


class Command(BaseCommand):
    help = "Walk the audit chain oldest first and name the first broken link, if any."

    def handle(self, **options):
        checked, broken = verify_chain()
        if broken:
            where = f"at event {broken.event_id}" if broken.event_id else "at the end of the chain"
            raise CommandError(
                f"The audit chain is broken {where}: {broken.reason}. {checked} event(s) before it are intact."
            )
        self.stdout.write(f"The audit chain is intact: {checked} event(s) checked.")
