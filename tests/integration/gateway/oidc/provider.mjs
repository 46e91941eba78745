// A real OpenID provider for the gateway's tests: panva's oidc-provider issuing client-credentials
// JWT access tokens (RFC 9068) for one resource server. Settings come from the environment:
//   OIDC_PORT      port to listen on (127.0.0.1)
//   OIDC_CLIENTS   JSON list of {client_id, client_secret, scope}
//   OIDC_RESOURCE  the resource indicator of the platform API
//   OIDC_AUDIENCE  the `aud` of its access tokens
//   OIDC_SCOPES    space-separated scopes the resource server knows
// It prints one line "listening <issuer>" once it accepts connections.
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.env.OIDC_PORT);
const issuer = `http://127.0.0.1:${port}`;
const resource = process.env.OIDC_RESOURCE;
const audience = process.env.OIDC_AUDIENCE;
const scopes = process.env.OIDC_SCOPES;
const clients = JSON.parse(process.env.OIDC_CLIENTS).map((client) => ({
  client_id: client.client_id,
  client_secret: client.client_secret,
  scope: client.scope,
  grant_types: ['client_credentials'],
  redirect_uris: [],
  response_types: [],
  token_endpoint_auth_method: 'client_secret_basic',
}));

// A fresh signing key per run: nothing secret is committed.
const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: crypto.randomUUID(), alg: 'RS256', use: 'sig' };

const provider = new Provider(issuer, {
  clients,
  // Only client-credentials tokens are issued; no session cookies are ever set.
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  ttl: { ClientCredentials: 600 },
  jwks: { keys: [signingKey] },
  scopes: scopes.split(' '),
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: false },
    revocation: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, indicator) => {
        if (indicator !== resource) throw new Provider.errors.InvalidTarget();
        return {
          scope: scopes,
          audience,
          accessTokenTTL: 600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
});

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`listening ${issuer}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
