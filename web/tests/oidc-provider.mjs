// A real OpenID provider for the browser tests: the certified `oidc-provider` package on
// loopback, with its development login and consent pages (any login name signs in as
// that user; the password is not checked). Each user's ID token carries a verified email
// (`<login>@example.com`), `preferred_username` and `groups` (from `groups[login]`).
import Provider from 'oidc-provider';

export const CLIENT_ID = 'apex';
export const CLIENT_SECRET = 'apex-client-secret-0123456789';

/** Starts the provider on `port`; `redirectUri` is the one client's (Apex's callback). */
export async function startProvider({ port, redirectUri, groups = {} }) {
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    pkce: { required: () => true },
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['preferred_username', 'name', 'groups'] },
    // The claims of the requested scopes go into the ID token itself.
    conformIdTokenClaims: false,
    features: { devInteractions: { enabled: true } },
    cookies: { keys: ['oidc-test-cookie-key'] },
    async findAccount(ctx, sub) {
      return {
        accountId: sub,
        async claims() {
          return { sub, email: `${sub}@example.com`, email_verified: true, preferred_username: sub, name: sub, groups: groups[sub] || [] };
        },
      };
    },
  });
  const server = await new Promise((resolve) => { const s = provider.listen(port, '127.0.0.1', () => resolve(s)); });
  return { issuer, close: () => new Promise((r) => server.close(r)) };
}
