// A real OpenID Connect provider for the single sign-on tests: the npm package oidc-provider (OpenID Certified),
// installed by `make oidc-provider` into .cache/oidc-provider, listening on 127.0.0.1 only.
//
// Settings come from the environment:
//   OIDC_PROVIDER_DIR   the folder `make oidc-provider` installed into
//   ISSUER              the issuer its tokens carry; "{port}" is replaced by the port (default http://127.0.0.1:{port})
//   ADVERTISED_ISSUER   the issuer its discovery document names (default: ISSUER). Set it to play a provider whose
//                       tokens come from another issuer than the one the portal trusts.
//   CLIENT_ID, CLIENT_SECRET, REDIRECT_URI   the portal's registration
//   ACCOUNTS_FILE       JSON {"<login>": {claims}}, read again at every use, so a test can change groups between
//                       sign-ins. The provider's own login page takes the login name (any password).
//   CODE_TTL            seconds an authorization code lives (default 60)
//   HOLD_CALLBACK       when set, the final redirect to REDIRECT_URI is a page with a link (id "callback") instead,
//                       so a test can play an attacker with the answer: change it, delay it, then open it.
// It prints "listening <port>" once it accepts connections, and stops on SIGTERM or when stdin closes.

import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const env = process.env;
const packageDir = join(env.OIDC_PROVIDER_DIR, "node_modules", "oidc-provider");
const main = JSON.parse(readFileSync(join(packageDir, "package.json"), "utf8")).main || "lib/index.js";
const { default: Provider } = await import(pathToFileURL(join(packageDir, main)).href);

const accounts = () => JSON.parse(readFileSync(env.ACCOUNTS_FILE, "utf8"));

const server = createServer();
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const port = server.address().port;
const issuer = (env.ISSUER || "http://127.0.0.1:{port}").replace("{port}", port);
const advertised = env.ADVERTISED_ISSUER ? env.ADVERTISED_ISSUER.replace("{port}", port) : "";

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: env.CLIENT_ID,
      client_secret: env.CLIENT_SECRET,
      redirect_uris: [env.REDIRECT_URI],
      grant_types: ["authorization_code"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_basic",
    },
  ],
  claims: {
    openid: ["sub"],
    email: ["email", "email_verified"],
    profile: ["name", "preferred_username"],
    groups: ["groups"],
  },
  async findAccount(ctx, id) {
    if (!accounts()[id]) return undefined;
    return { accountId: id, claims: async () => ({ sub: id, ...(accounts()[id] || {}) }) };
  },
  pkce: { required: () => true },
  ttl: { AuthorizationCode: Number(env.CODE_TTL || 60) },
  cookies: { keys: ["tests-only-cookie-key"] },
  features: { devInteractions: { enabled: true } },
});

if (advertised) {
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.path.endsWith("/.well-known/openid-configuration") && ctx.body) {
      ctx.body = { ...ctx.body, issuer: advertised };
    }
  });
}

if (env.HOLD_CALLBACK) {
  provider.use(async (ctx, next) => {
    await next();
    const location = ctx.response.get("Location");
    if ([302, 303].includes(ctx.status) && location.startsWith(env.REDIRECT_URI)) {
      ctx.status = 200;
      ctx.remove("Location");
      ctx.type = "html";
      const href = location.replaceAll("&", "&amp;").replaceAll('"', "&quot;");
      ctx.body = `<!doctype html><title>Held</title><a id="callback" href="${href}">Back to the application</a>`;
    }
  });
}

server.on("request", provider.callback());
console.log(`listening ${port}`);

const stop = () => server.close(() => process.exit(0));
process.on("SIGTERM", stop);
process.stdin.on("end", stop);
process.stdin.resume();
