// A real OpenID provider for the tests: panva's oidc-provider (OpenID-certified), configured from a JSON file
// and served on loopback. Started by tests/oidc_provider.py as `node tests/oidc/provider.mjs CONFIG.json`.
//
// CONFIG.json:
//   {"issuer": "http://127.0.0.1:PORT", "port": PORT,
//    "clients": [{"client_id": "...", "client_secret": "...", "redirect_uris": ["https://.../oidc/callback"]}],
//    "accounts": {"alice": {"groups": ["ml-team"], "email": "alice@example.test", "name": "Alice"}},
//    "auto_consent": true,    // optional (default true): no consent page, the requested scopes are granted
//    "pkce_required": true}   // optional (default true): every authorization request needs S256 PKCE
// A client is registered as written (any client metadata oidc-provider accepts); token_endpoint_auth_method
// defaults to client_secret_basic, a client that authenticates with client_secret_post must say so (the provider
// accepts only the registered method). Claims: sub and preferred_username = the account id (an account may set
// preferred_username), name, email, email_verified (true unless the account says otherwise), groups; the ones the
// granted scopes (openid profile email groups) cover go into the ID token itself, not only to userinfo.
//
// Login: oidc-provider's development interactions (the page at /interaction/<uid>: a form with `login` and
// `password`, any password). One change: a login name that is not in `accounts` is refused on the login page
// itself (HTTP 303 back to the form, which then shows "Unknown login name"; no session, no code).
//
// Prints `ready <issuer>` on stdout once listening on 127.0.0.1:PORT; exits 0 on SIGTERM or SIGINT, or when the
// process that started it is gone.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import * as querystring from 'node:querystring';

import Provider from 'oidc-provider';

const HOUR = 60 * 60;

const configPath = process.argv[2];
if (!configPath) {
  console.error('usage: node provider.mjs CONFIG.json');
  process.exit(2);
}
const config = JSON.parse(readFileSync(configPath, 'utf8'));
for (const key of ['issuer', 'port', 'clients', 'accounts']) {
  if (config[key] === undefined) {
    console.error(`${configPath}: "${key}" is required`);
    process.exit(2);
  }
}
const accounts = config.accounts;
const autoConsent = config.auto_consent ?? true;
const pkceRequired = config.pkce_required ?? true;

function findAccount(ctx, id) {
  if (!Object.hasOwn(accounts, id)) {
    return undefined;
  }
  const account = accounts[id];
  return {
    accountId: id,
    async claims() {
      const claims = {
        ...account,
        sub: id,
        preferred_username: account.preferred_username ?? id,
        email_verified: account.email === undefined ? undefined : (account.email_verified ?? true),
        groups: account.groups ?? [],
      };
      delete claims.password;
      return Object.fromEntries(Object.entries(claims).filter(([, value]) => value !== undefined));
    },
  };
}

// With auto_consent, every grant covers what the request asks for (a registered client is trusted), so the
// browser sees only the login form; without it, the development consent page ("Continue") appears.
async function loadExistingGrant(ctx) {
  const { oidc } = ctx;
  const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(oidc.client.clientId);
  let grant = grantId ? await oidc.provider.Grant.find(grantId) : undefined;
  if (!autoConsent) {
    return grant;
  }
  grant ??= new oidc.provider.Grant({ accountId: oidc.account.accountId, clientId: oidc.client.clientId });
  grant.addOIDCScope([...oidc.requestParamOIDCScopes].join(' '));
  if (oidc.requestParamClaims.size) {
    grant.addOIDCClaims([...oidc.requestParamClaims]);
  }
  await grant.save();
  return grant;
}

// An RS256 signing key made for this run (the JWKS endpoint publishes its public half).
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: `test-${randomBytes(6).toString('hex')}`, alg: 'RS256', use: 'sig' };

const provider = new Provider(config.issuer, {
  clients: config.clients,
  findAccount,
  loadExistingGrant,
  jwks: { keys: [signingKey] },
  scopes: ['openid', 'profile', 'email', 'groups'],
  claims: {
    openid: ['sub'],
    profile: ['name', 'given_name', 'family_name', 'preferred_username'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  // The claims of the granted scopes go into the ID token too (the relying party reads groups from it).
  conformIdTokenClaims: false,
  pkce: { required: () => pkceRequired },
  features: { devInteractions: { enabled: true } },
  ttl: {
    AccessToken: HOUR,
    AuthorizationCode: 60,
    IdToken: HOUR,
    Interaction: HOUR,
    Session: HOUR,
    Grant: HOUR,
    RefreshToken: HOUR,
  },
  // Plain http on loopback: no `secure` option, so the cookies library marks them secure only on https
  // requests. Cookies are not scoped by port, so the names say whose they are (a relying party on another
  // port of 127.0.0.1 sees them).
  cookies: {
    keys: [randomBytes(32).toString('hex')],
    names: { session: 'op_session', interaction: 'op_interaction', resume: 'op_interaction_resume' },
    long: { httpOnly: true, sameSite: 'lax' },
    short: { httpOnly: true, sameSite: 'lax' },
  },
});

for (const event of ['server_error', 'authorization.error', 'grant.error', 'userinfo.error', 'end_session.error',
  'backchannel.error', 'jwks.error', 'discovery.error', 'introspection.error', 'revocation.error']) {
  provider.on(event, (ctx, err) => {
    console.error(`${event}: ${err.name}: ${err.message}${err.error_description ? ` (${err.error_description})` : ''}`);
  });
}

const INTERACTION = /^\/interaction\/([^/]+)$/;
const LOGIN_ERROR = '<p class="login-error" role="alert" style="color:#c00;text-align:center">Unknown login name</p>';

// Runs before oidc-provider's routes.
provider.use(async (ctx, next) => {
  const started = Date.now();
  try {
    const match = INTERACTION.exec(ctx.path);
    if (match && ctx.method === 'POST' && ctx.is('application/x-www-form-urlencoded')) {
      // The login step of the development interactions, with the account check it lacks (it logs in any name).
      let details;
      try {
        details = await provider.interactionDetails(ctx.req, ctx.res);
      } catch {
        details = undefined; // no interaction: oidc-provider's own handler answers with its error page
      }
      if (details?.prompt.name === 'login') {
        const chunks = [];
        for await (const chunk of ctx.req) {
          chunks.push(chunk);
        }
        const body = querystring.parse(Buffer.concat(chunks).toString('utf8'));
        const login = typeof body.login === 'string' ? body.login : '';
        if (!findAccount(ctx, login)) {
          console.error(`login refused: unknown login name ${JSON.stringify(login)}`);
          ctx.status = 303;
          ctx.redirect(`/interaction/${match[1]}?error=unknown_login`);
          return;
        }
        await provider.interactionFinished(ctx.req, ctx.res, { login: { accountId: login } },
          { mergeWithLastSubmission: false });
        ctx.respond = false; // interactionFinished wrote the 303 to the authorization endpoint
        return;
      }
    }
    await next();
    if (typeof ctx.body === 'string' && ctx.response.is('html')) {
      // The built-in pages import a web font from Google: the tests run offline.
      ctx.body = ctx.body.replace(/@import url\(https:\/\/fonts\.googleapis\.com[^)]*\);/g, '');
      if (match && ctx.method === 'GET' && ctx.query.error === 'unknown_login') {
        ctx.body = ctx.body.replace(/<form /, `${LOGIN_ERROR}\n<form `);
      }
    }
  } finally {
    console.error(`${ctx.method} ${ctx.path} -> ${ctx.respond === false ? ctx.res.statusCode : ctx.status} `
      + `(${Date.now() - started} ms)`);
  }
});

const server = createServer(provider.callback());
server.on('error', (err) => {
  console.error(`cannot listen on 127.0.0.1:${config.port}: ${err.message}`);
  process.exit(1);
});
server.listen(config.port, '127.0.0.1', () => {
  process.stdout.write(`ready ${config.issuer}\n`);
});

function stop(signal) {
  console.error(`${signal}: stopping`);
  server.close();
  server.closeAllConnections();
  process.exit(0);
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
// A test run killed before it could stop the provider must not leave it holding the port: gone with its parent.
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) {
    stop(`parent ${parent} gone`);
  }
}, 1000).unref();
