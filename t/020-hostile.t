# Hostile and malformed tokens: each gets a precise 401 (or nginx's own 400 for what it refuses
# before the module runs), never a 2xx, never a 5xx.
use Test::Nginx::Socket 'no_plan';
use EntraTest;

log_level('info');
use_defaults();
run_tests();

__DATA__

=== TEST 1: one segment
--- more_headers
Authorization: Bearer abc
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="malformed"
--- error_log eval
qr/entra: access denied: malformed \(provider "dev"\)/

=== TEST 2: two segments
--- more_headers
Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.e30
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="malformed"

=== TEST 3: four segments
--- more_headers eval: 'Authorization: Bearer ' . token() . '.e30'
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="malformed"

=== TEST 4: the scheme with no token
--- more_headers
Authorization: Bearer
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="malformed"

=== TEST 5: two tokens
--- more_headers eval: 'Authorization: Bearer ' . token() . ' ' . token()
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="malformed"

=== TEST 6: header is not base64url
--- more_headers eval: 'Authorization: Bearer ' . replace_part(0, '!!!')
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="malformed"

=== TEST 7: header is not JSON
--- more_headers eval: 'Authorization: Bearer ' . replace_part(0, b64url('hello'))
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="malformed"

=== TEST 8: header is a JSON array
--- more_headers eval: 'Authorization: Bearer ' . replace_part(0, b64url('["RS256"]'))
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="malformed"

=== TEST 9: header without alg
--- more_headers eval: bearer('--unset-header', 'alg')
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="malformed"

=== TEST 10: header with a duplicate alg
--- more_headers eval: 'Authorization: Bearer ' . replace_part(0, b64url('{"alg":"RS256","alg":"none","kid":"x"}'))
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="malformed"

=== TEST 11: alg none, no signature
--- more_headers eval: bearer('--sign', 'none')
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="alg_not_allowed"

=== TEST 12: alg "None" with a real signature
--- more_headers eval: bearer('--header', 'alg="None"')
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="alg_not_allowed"

=== TEST 13: HS256 signed with the RSA public key
--- more_headers eval: bearer('--sign', 'hs256-pubkey')
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="alg_not_allowed"

=== TEST 14: RS384 is not in the default algorithms
--- more_headers eval: bearer('--alg', 'RS384')
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="alg_not_allowed"

=== TEST 15: an EC-signed token while only RS256 is allowed
--- more_headers eval: bearer('--key', kid_of_kind('P-256'))
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="alg_not_allowed"

=== TEST 16: an ES256 header on an RSA key
--- http_config eval: provider('algorithms RS256 ES256;')
--- more_headers eval: bearer('--header', 'alg="ES256"')
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="alg_key_mismatch"

=== TEST 17: unknown kid
--- more_headers eval: bearer('--header', 'kid="no-such-key"')
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="unknown_kid"
--- error_log eval
qr/entra: access denied: unknown_kid \(provider "dev"\)/

=== TEST 18: no kid
--- more_headers eval: bearer('--unset-header', 'kid')
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="missing_kid"

=== TEST 19: kid is a number
--- more_headers eval: bearer('--header', 'kid=42')
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="malformed"

=== TEST 20: an embedded jwk is ignored (a stranger's key and kid)
--- more_headers eval
'Authorization: Bearer ' . stranger_token('--header', 'jwk={"kty":"RSA","n":"AQAB","e":"AQAB"}')
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="unknown_kid"

=== TEST 21: an embedded jwk with our kid: the signature is checked with our key
--- more_headers eval: 'Authorization: Bearer ' . stranger_token('--header', 'kid="' . kid_of_kind('RSA') . '"', '--header', 'jwk={"kty":"RSA","n":"AQAB","e":"AQAB"}')
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="bad_signature"

=== TEST 22: jku is ignored
--- more_headers eval: 'Authorization: Bearer ' . stranger_token('--header', 'kid="' . kid_of_kind('RSA') . '"', '--header', 'jku="https://attacker.example/keys"')
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="bad_signature"

=== TEST 23: x5u is ignored
--- more_headers eval: 'Authorization: Bearer ' . stranger_token('--header', 'kid="' . kid_of_kind('RSA') . '"', '--header', 'x5u="https://attacker.example/cert"')
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="bad_signature"

=== TEST 24: x5c is ignored
--- more_headers eval: 'Authorization: Bearer ' . stranger_token('--header', 'kid="' . kid_of_kind('RSA') . '"', '--header', 'x5c=["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]')
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="bad_signature"

=== TEST 25: a crit header
--- more_headers eval: bearer('--header', 'crit=["exp"]')
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="crit_header"

=== TEST 26: a corrupted signature
--- more_headers eval: bearer('--sign', 'corrupt')
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="bad_signature"

=== TEST 27: the signature stripped
--- more_headers eval: 'Authorization: Bearer ' . replace_part(2, '')
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="bad_signature"

=== TEST 28: the payload swapped for another user's
--- more_headers eval: 'Authorization: Bearer ' . replace_part(1, (split /\./, token('--user', 'mallory', '--groups', 'admins'))[1])
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="bad_signature"

=== TEST 29: a token from another IdP that names our kid
--- more_headers eval: 'Authorization: Bearer ' . stranger_token('--header', 'kid="' . kid_of_kind('RSA') . '"')
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="bad_signature"

=== TEST 30: exp is a string
--- more_headers eval: bearer('--claim', 'exp="9999999999"')
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="invalid_claim"
--- error_log eval
qr/entra: access denied: invalid_claim \(provider "dev", claim "exp"\)/

=== TEST 31: nbf is a string
--- more_headers eval: bearer('--claim', 'nbf="0"')
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="invalid_claim"
--- error_log eval
qr/entra: access denied: invalid_claim \(provider "dev", claim "nbf"\)/

=== TEST 32: no exp
--- more_headers eval: bearer('--unset', 'exp')
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="missing_exp"

=== TEST 33: expired by leeway + 1 s
--- more_headers eval: bearer('--exp', '-61')
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="expired"

=== TEST 34: not valid for another ten minutes
--- more_headers eval: bearer('--nbf', '600')
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="not_yet_valid"

=== TEST 35: a token for another API
--- more_headers eval: bearer('--aud', 'api://someone-else')
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="wrong_audience"
--- error_log eval
qr/entra: access denied: wrong_audience \(provider "dev"\): aud "api:\/\/someone-else", accepted: "[^"]+"/

=== TEST 36: an audience array without ours
--- more_headers eval: bearer('--claim', 'aud=["api://a","api://b"]')
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="wrong_audience"
--- error_log eval
qr/access denied: wrong_audience .*: aud "api:\/\/a" "api:\/\/b", accepted: /

=== TEST 37: aud is a number
--- more_headers eval: bearer('--claim', 'aud=1')
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="invalid_claim"

=== TEST 38: a foreign issuer
--- more_headers eval: bearer('--claim', qq{iss="https://evil.example/$EntraTest::TENANT/v2.0"})
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="wrong_issuer"
--- error_log eval
qr/access denied: wrong_issuer .*: iss "https:\/\/evil\.example\/9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93\/v2\.0", accepted: "https:\/\/login\.microsoftonline\.com\/\{tenantid\}\/v2\.0" "https:\/\/sts\.windows\.net\/\{tenantid\}\/"/

=== TEST 39: the issuer with an extra trailing slash
--- more_headers eval: bearer('--claim', qq{iss="https://login.microsoftonline.com/$EntraTest::TENANT/v2.0/"})
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="wrong_issuer"

=== TEST 40: tid and iss disagree
--- more_headers eval: bearer('--claim', qq{tid="$EntraTest::OTHER_TENANT"})
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="wrong_issuer"

=== TEST 41: another tenant's token
--- more_headers eval: bearer('--tid', $EntraTest::OTHER_TENANT)
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="tenant_not_allowed"
--- error_log eval
qr/access denied: tenant_not_allowed .*: tid "[0-9a-f-]{36}", allowed: "9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93"/

=== TEST 42: a Microsoft Graph token
--- more_headers eval: bearer('--graph')
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="graph_token"

=== TEST 43: neither scp nor roles
--- more_headers eval: bearer('--unset', 'scp')
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="no_permission_claims"

=== TEST 44: scp is an array
--- more_headers eval: bearer('--claim', 'scp=["access_as_user"]')
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="invalid_claim"

=== TEST 45: groups is a string
--- more_headers eval: bearer('--claim', 'groups="admins"')
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="invalid_claim"

=== TEST 46: tid is not a GUID
--- more_headers eval: bearer('--claim', 'tid="contoso"')
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="invalid_claim"

=== TEST 47: a key that names another tenant's issuer cannot sign for ours
--- more_headers eval: bearer('--key', kid_with_issuer())
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="key_issuer_mismatch"

=== TEST 48: binary bytes in the token
--- more_headers eval: "Authorization: Bearer \xff\xfe.\x80.\x81"
--- error_code_like: ^(400|401)$

=== TEST 49: a token larger than nginx's header buffers is refused by nginx
--- more_headers eval: 'Authorization: Bearer ' . ('A' x 100000)
--- error_code_like: ^4\d\d$

=== TEST 50: a huge token inside larger buffers is judged malformed, not parsed
--- http_config
    large_client_header_buffers 4 128k;
--- more_headers eval: 'Authorization: Bearer ' . ('eyJ' x 25000) . '.e30.sig'
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="malformed"

=== TEST 51: a token in the query string is not read
--- request eval: 'GET /api?access_token=' . token()
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev"

=== TEST 52: two Authorization headers are refused by nginx
--- more_headers eval: bearer() . "\n" . bearer()
--- error_code: 400

=== TEST 53: the scheme is case-insensitive
--- more_headers eval: 'Authorization: bEaReR ' . token()
--- error_code: 200

=== TEST 54: within the leeway is still valid
--- http_config eval: provider('leeway 10m;')
--- more_headers eval: bearer('--exp', '-300')
--- error_code: 200

=== TEST 55: a huge header parameter is only JSON
--- more_headers eval: bearer('--header', 'x="' . ('a' x 5000) . '"')
--- error_code: 200

=== TEST 56: the largest token judged is 64 KiB: a valid one of 65536 bytes passes, one byte more is malformed
--- http_config
    large_client_header_buffers 4 128k;
--- request eval: ['GET /api', 'GET /api']
--- more_headers eval: ['Authorization: Bearer ' . token_of_length(65536), 'Authorization: Bearer ' . token_of_length(65537)]
--- error_code eval: [200, 401]
--- response_headers eval
[undef, 'WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="malformed"']

=== TEST 57: an ID token of this app (a nonce, roles, aud = the client id) is no access token
--- more_headers eval: bearer('--claim', 'nonce="n-1"', '--roles', 'Orders.Read.All')
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="not_an_access_token"

=== TEST 58: nor one that names no client (neither azp nor appid)
--- more_headers eval: bearer('--unset', 'azp', '--unset', 'appid')
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="not_an_access_token"

=== TEST 59: an RS256 signature relabelled PS256, on a provider that allows both
--- http_config eval: provider('algorithms RS256 PS256;')
--- more_headers eval
my @parts = split /\./, token();
my $header = JSON::PP::decode_json(MIME::Base64::decode_base64url($parts[0]));
$header->{alg} = 'PS256';
$parts[0] = b64url(JSON::PP->new->canonical->encode($header));
'Authorization: Bearer ' . join '.', @parts
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="bad_signature"
