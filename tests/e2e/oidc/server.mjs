// A throwaway OpenID Connect provider for the RAG_AUTH=oidc browser tests (tests/e2e/test_oidc.py).
//
// panva's certified `oidc-provider`, configured for one confidential client and two fixed accounts,
// over plain http on loopback. Everything lives in memory and dies with the process. Pinned to the
// 8.x line: 9.x needs Node >= 20.19 (URL.parse), and Debian 12's nodejs is 18.20; 8.8.1 runs on both.
//
// Environment:
//   OIDC_PORT            the port to listen on (127.0.0.1); the issuer is http://127.0.0.1:$OIDC_PORT
//   OIDC_CLIENT_SECRET   the secret of the client `rag-test`
//   OIDC_REDIRECT_URIS   comma-separated redirect URIs (Streamlit: http://localhost:PORT/oauth2callback);
//                        they are also the allowed post-logout redirect URIs (Streamlit sends its
//                        callback there after st.logout()).
//
// Prints READY on stdout once it listens.

import { randomBytes, generateKeyPairSync } from 'node:crypto';
import http from 'node:http';

import Provider, { interactionPolicy } from 'oidc-provider';

const port = Number.parseInt(process.env.OIDC_PORT ?? '', 10);
const clientSecret = process.env.OIDC_CLIENT_SECRET ?? '';
const redirectUris = (process.env.OIDC_REDIRECT_URIS ?? '')
  .split(',')
  .map((uri) => uri.trim())
  .filter(Boolean);
if (!Number.isInteger(port) || port <= 0 || !clientSecret || redirectUris.length === 0) {
  console.error('set OIDC_PORT, OIDC_CLIENT_SECRET and OIDC_REDIRECT_URIS');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;
const CLIENT_ID = 'rag-test';

// The accounts of the test configuration, by the name typed into the login form: alice is an admin
// there (RAG_ADMIN_EMAILS), bob a member. The others try to get in as someone they are not:
// mallory claims alice's address without the provider having verified it, twin is a second account
// whose (verified) address is bob's, and eve's verified address is outside the allowed domains.
// carol is an ordinary newcomer (her account waits for an admin when RAG_OIDC_NEW_USERS=pending).
const ACCOUNTS = {
  'alice@example.test': { password: 'alice-pass', name: 'Alice Admin' },
  'bob@example.test': { password: 'bob-pass', name: 'Bob Member' },
  'carol@example.test': { password: 'carol-pass', name: 'Carol Newcomer' },
  mallory: { password: 'mallory-pass', name: 'Mallory', email: 'alice@example.test', verified: false },
  twin: { password: 'twin-pass', name: 'Bob Twin', email: 'bob@example.test' },
  'eve@elsewhere.test': { password: 'eve-pass', name: 'Eve Outsider' },
};

const lookUp = (login) => (Object.hasOwn(ACCOUNTS, login) ? ACCOUNTS[login] : undefined);

function account(login) {
  const known = lookUp(login);
  if (!known) return undefined;
  // The subject is the login name: stable per account, and never another account's.
  const email = known.email ?? login;
  const verified = known.verified ?? true;
  return {
    accountId: login,
    async claims() {
      return { sub: login, email, email_verified: verified, name: known.name };
    },
  };
}

// Streamlit's st.login() always sends prompt=select_account; oidc-provider refuses prompt values
// its policy does not know, so the policy gets one. It is requested on every sign-in from the app
// and is answered by the same login form: each st.login() shows the form, as a real IdP's
// account chooser would.
const policy = interactionPolicy.base();
policy.add(new interactionPolicy.Prompt({ name: 'select_account', requestable: true }), 0);

// A fresh RSA key per run signs the ID tokens (RS256, what Authlib expects by default).
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'test-rs256', use: 'sig', alg: 'RS256' };

const page = (title, body) => `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>${title}</title>
<style>body{font-family:sans-serif;max-width:22rem;margin:3rem auto}label,input,button{display:block;width:100%;margin:.4rem 0}</style>
</head><body>${body}</body></html>`;

const escape = (s) =>
  String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: CLIENT_ID,
      client_secret: clientSecret,
      client_name: 'RAG test app',
      redirect_uris: redirectUris,
      post_logout_redirect_uris: redirectUris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      scope: 'openid email profile',
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  jwks: { keys: [signingKey] },
  cookies: {
    keys: [randomBytes(32).toString('hex')],
    // Plain http on loopback: no Secure flag (the defaults already omit it; stated for clarity).
    long: { httpOnly: true, sameSite: 'lax', secure: false },
    short: { httpOnly: true, sameSite: 'lax', secure: false },
  },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
  },
  scopes: ['openid', 'email', 'profile'],
  // Authlib (and so st.login) reads the user from the ID token, not from the userinfo endpoint:
  // put the scopes' claims into the ID token of the code flow too.
  conformIdTokenClaims: false,
  // S256 is advertised in the discovery document, and Streamlit then sends a code_challenge.
  // Requiring it checks that it really does.
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: false },
    rpInitiatedLogout: {
      enabled: true,
      // Sign-out without a confirmation click: the form submits itself, then the provider sends the
      // browser to Streamlit's post_logout_redirect_uri (its /oauth2callback), which goes home.
      async logoutSource(ctx, form) {
        ctx.body = page(
          'Signing out',
          `${form}<input type="hidden" form="op.logoutForm" name="logout" value="yes">
<p>Signing out…</p><script>document.getElementById('op.logoutForm').submit()</script>`,
        );
      },
      async postLogoutSuccessSource(ctx) {
        ctx.body = page('Signed out', '<h1>Signed out</h1>');
      },
    },
  },
  // Advertised (OpenID Connect Prompt Create's discovery field) so a test can see the policy.
  discovery: { prompt_values_supported: ['none', ...policy.map((prompt) => prompt.name)] },
  interactions: {
    policy,
    url: (_ctx, interaction) => `/interaction/${interaction.uid}`,
  },
  // First-party client: consent is implied, so no consent screen ever shows.
  async loadExistingGrant(ctx) {
    const { oidc } = ctx;
    const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(oidc.client.clientId);
    if (grantId) {
      const grant = await oidc.provider.Grant.find(grantId);
      if (grant && grant.accountId === oidc.account.accountId) return grant;
    }
    const grant = new oidc.provider.Grant({ clientId: oidc.client.clientId, accountId: oidc.account.accountId });
    grant.addOIDCScope('openid email profile');
    await grant.save();
    return grant;
  },
  findAccount: (_ctx, id) => account(id),
  async renderError(ctx, out) {
    ctx.type = 'html';
    const rows = Object.entries(out)
      .map(([k, v]) => `<p><strong>${escape(k)}</strong>: ${escape(v)}</p>`)
      .join('');
    ctx.body = page('Error', `<h1>OIDC error</h1>${rows}`);
  },
  ttl: { Interaction: 600, Session: 3600, Grant: 3600, AccessToken: 600, IdToken: 600, AuthorizationCode: 60 },
});

function loginForm(uid, { login = '', error = '' } = {}) {
  return page(
    'Sign in',
    `<h1>Test OIDC provider</h1>
${error ? `<p role="alert">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login" autocomplete="off">
<label for="login">E-mail</label><input id="login" name="login" type="text" value="${escape(login)}" required autofocus>
<label for="password">Password</label><input id="password" name="password" type="password" required>
<button type="submit">Sign in</button>
</form>`,
  );
}

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function send(res, status, html) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(html);
}

// The interaction pages (login), outside oidc-provider's Koa app: GET shows the form, POST checks the
// password and finishes the interaction, which redirects back into the authorization flow.
async function interaction(req, res) {
  const url = new URL(req.url, issuer);
  const details = await provider.interactionDetails(req, res);
  const { uid, prompt } = details;
  if (req.method === 'GET' && url.pathname === `/interaction/${uid}`) {
    if (prompt.name !== 'login' && prompt.name !== 'select_account') {
      // Consent is implied by loadExistingGrant; anything else is unexpected here.
      send(res, 500, page('Error', `unexpected prompt ${escape(prompt.name)}`));
      return;
    }
    send(res, 200, loginForm(uid));
    return;
  }
  if (req.method === 'POST' && url.pathname === `/interaction/${uid}/login`) {
    const form = await readForm(req);
    const login = (form.get('login') ?? '').trim().toLowerCase();
    const known = lookUp(login);
    if (!known || known.password !== form.get('password')) {
      send(res, 200, loginForm(uid, { login, error: 'Wrong e-mail or password.' }));
      return;
    }
    await provider.interactionFinished(
      req,
      res,
      { select_account: {}, login: { accountId: login } },
      { mergeWithLastSubmission: false },
    );
    return;
  }
  send(res, 404, page('Not found', 'not found'));
}

const providerCallback = provider.callback();
const server = http.createServer((req, res) => {
  if (req.url.startsWith('/interaction/')) {
    interaction(req, res).catch((err) => {
      console.error(err);
      if (!res.headersSent) send(res, 400, page('Error', escape(err.message ?? err)));
    });
    return;
  }
  providerCallback(req, res);
});

provider.on('server_error', (_ctx, err) => console.error('server_error', err));

const shutdown = () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

server.listen(port, '127.0.0.1', () => {
  console.log('READY');
});
