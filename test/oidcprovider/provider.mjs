// Loopback-only OpenID provider for Tollgate's end-to-end login tests:
// panva/oidc-provider (OpenID Certified) with its built-in dev login and consent pages.
// It binds 127.0.0.1 only. Signing and cookie keys are generated at every start.
//
// Env:
//   PORT                      listen port on 127.0.0.1 (default 9000; 0 = any, printed on stdout)
//   REDIRECT_URIS             comma list of allowed redirect URIs (required)
//   POST_LOGOUT_REDIRECT_URIS comma list of allowed post-logout redirect URIs (optional)
//   CLIENT_ID                 confidential client for the gateway (default "tollgate")
//   CLIENT_SECRET             its secret (required; tests make a random one)
//   TOKEN_TTL                 access/ID token lifetime in seconds (default 300; client-credentials tokens too)
//   CC_CLIENT_ID              client that may use the client_credentials grant, for the egress
//                             credential tests (default "tollgate-egress")
//   CC_CLIENT_SECRET          its secret (optional: without it there is no such client)
//
// Client-credentials tokens are opaque, with scope "api:read" when asked; the introspection
// endpoint (/token/introspection) answers for them to any confidential client.
//
// Users: any login name and any password (dev interactions). Claims by user:
//   alice -> groups [dev, admins]; bob -> groups [dev]; anyone else -> groups [].
// On stdout, once listening: "oidc-provider listening, issuer http://127.0.0.1:<port>".
import crypto from 'node:crypto';
import http from 'node:http';
import Provider from 'oidc-provider';

const HOST = '127.0.0.1';
const list = (s) => (s || '').split(',').map((x) => x.trim()).filter(Boolean);
const REDIRECTS = list(process.env.REDIRECT_URIS);
const POST_LOGOUT = list(process.env.POST_LOGOUT_REDIRECT_URIS);
const CLIENT_ID = process.env.CLIENT_ID || 'tollgate';
const CLIENT_SECRET = process.env.CLIENT_SECRET;
const TTL = Number(process.env.TOKEN_TTL || 300);
const CC_CLIENT_ID = process.env.CC_CLIENT_ID || 'tollgate-egress';
const CC_CLIENT_SECRET = process.env.CC_CLIENT_SECRET;
if (REDIRECTS.length === 0 || !CLIENT_SECRET) {
  console.error('provider.mjs: REDIRECT_URIS and CLIENT_SECRET are required');
  process.exit(2);
}

const GROUPS = { alice: ['dev', 'admins'], bob: ['dev'] };

// Bind first so that PORT=0 works: the issuer must name the real port.
const server = http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(Number(process.env.PORT ?? 9000), HOST, resolve);
});
const ISSUER = `http://${HOST}:${server.address().port}`;

const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'e2e-rs256', alg: 'RS256', use: 'sig' };

const provider = new Provider(ISSUER, {
  clients: [
    {
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      redirect_uris: REDIRECTS,
      post_logout_redirect_uris: POST_LOGOUT,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
    },
    ...(CC_CLIENT_SECRET
      ? [
          {
            client_id: CC_CLIENT_ID,
            client_secret: CC_CLIENT_SECRET,
            grant_types: ['client_credentials'],
            response_types: [],
            redirect_uris: [],
            scope: 'api:read',
          },
        ]
      : []),
  ],
  jwks: { keys: [jwk] },
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  findAccount: async (_ctx, sub) => ({
    accountId: sub,
    claims: async () => ({
      sub,
      email: `${sub}@example.org`,
      email_verified: true,
      name: sub,
      preferred_username: sub,
      groups: GROUPS[sub] || [],
    }),
  }),
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  scopes: ['openid', 'offline_access', 'email', 'profile', 'groups', ...(CC_CLIENT_SECRET ? ['api:read'] : [])],
  conformIdTokenClaims: false, // put email/name/groups in the ID token, where the gateway reads them
  pkce: { required: () => true },
  ttl: { AccessToken: TTL, IdToken: TTL, Interaction: 600, Session: 3600, Grant: 3600, RefreshToken: 3600, ClientCredentials: TTL },
  features: {
    devInteractions: { enabled: true }, // built-in login form: any login, any password
    rpInitiatedLogout: { enabled: true },
    revocation: { enabled: true },
    clientCredentials: { enabled: Boolean(CC_CLIENT_SECRET) },
    introspection: { enabled: Boolean(CC_CLIENT_SECRET) },
  },
});

server.on('request', provider.callback());
console.log(`oidc-provider listening, issuer ${ISSUER}`);
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => server.close(() => process.exit(0)));
