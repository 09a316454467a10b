# Configuration: what nginx -t accepts, what it refuses (naming the directive, file and line),
# and what it warns about.
use Test::Nginx::Socket 'no_plan';
use EntraTest;

log_level('info');
use_defaults();
run_tests();

__DATA__

=== TEST 1: a complete provider with every directive is accepted
--- http_config
    entra_provider full {
        tenant          9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93;
        client_id       6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64;
        audience        api://orders 6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64;
        authority       https://login.microsoftonline.com/;
        issuer          "https://sts.windows.net/{tenantid}/" "https://login.microsoftonline.com/{tenantid}/v2.0";
        jwks_file       $TEST_NGINX_ENTRA_JWKS;
        leeway          2m;
        algorithms      RS256 PS256 ES256 EdDSA;
        require_permission off;
    }
--- config
    location /api {
        entra_auth full;
        proxy_pass http://backend;
    }
--- more_headers eval: bearer('--aud', 'api://orders', '--unset', 'scp')
--- error_code: 200
--- no_error_log
[warn]
[emerg]

=== TEST 2: an unknown provider
--- config
    location /api {
        entra_auth nosuch;
        proxy_pass http://backend;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*entra_auth: unknown entra_provider "nosuch" in \S+nginx\.conf:\d+/

=== TEST 3: a provider may be used before it is defined
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_BACKEND_PORT;
        location /x { entra_auth late; proxy_pass http://backend; }
    }
    entra_provider late {
        tenant     9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93;
        client_id  6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64;
        jwks_file  $TEST_NGINX_ENTRA_JWKS;
    }
    upstream backend { server 127.0.0.1:$TEST_NGINX_SERVER_PORT; }
--- config
    location /api {
        entra_auth late;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/open;
    }
    location /open { return 200 "open\n"; }
--- more_headers eval: bearer()
--- response_body
open

=== TEST 4: a tenant that is not a GUID
--- http_config
    entra_provider bad {
        tenant     contoso_corp;
        client_id  6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64;
        jwks_file  $TEST_NGINX_ENTRA_JWKS;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"tenant" value "contoso_corp" is neither a GUID nor common, organizations or consumers in \S+nginx\.conf:\d+/

=== TEST 5: a domain-name tenant needs metadata, not a key file
--- http_config
    entra_provider bad {
        tenant     contoso.onmicrosoft.com;
        client_id  6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64;
        jwks_file  $TEST_NGINX_ENTRA_JWKS;
    }
--- must_die
--- error_log
"tenant" "contoso.onmicrosoft.com" is a domain name, which needs metadata discovery (no "jwks_file")

=== TEST 6: jwks_file and metadata discovery exclude each other
--- http_config
    entra_provider bad {
        tenant       9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93;
        client_id    6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64;
        jwks_file    $TEST_NGINX_ENTRA_JWKS;
        metadata_url https://login.microsoftonline.com/9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93/v2.0/.well-known/openid-configuration;
    }
--- must_die
--- error_log
entra_provider "bad": "jwks_file" and "metadata_url" exclude each other

=== TEST 7: discovery directives are checked
--- http_config
    entra_provider bad {
        tenant     9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93;
        client_id  6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64;
        refresh    hourly;
    }
--- must_die
--- error_log
"refresh" value "hourly" is not a time

=== TEST 8: a plain-http metadata_url must be on loopback
--- http_config
    entra_provider bad {
        tenant       9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93;
        client_id    6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64;
        metadata_url http://login.example.com/meta;
    }
--- must_die
--- error_log
"metadata_url" value "http://login.example.com/meta" must be an https:// URL, or http:// on a loopback address

=== TEST 9: a plain-http metadata_url on loopback draws a warning at nginx -t
--- http_config
    entra_provider dev {
        tenant       9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93;
        client_id    6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64;
        metadata_url http://127.0.0.1:9/meta;
    }
--- must_die
--- error_log
entra_provider "dev": metadata "http://127.0.0.1:9/meta" is plain http: for tests and development only
--- config
    location /api { entra_auth dev; return 200; }
    location /x { entra_auth nosuch; }

=== TEST 10: a client_id that is not a GUID
--- http_config
    entra_provider bad {
        tenant     9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93;
        client_id  orders-api;
        jwks_file  $TEST_NGINX_ENTRA_JWKS;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"client_id" value "orders-api" is not a GUID in \S+nginx\.conf:\d+/

=== TEST 11: no client_id, reported at the block's first line
--- http_config
    entra_provider bad {
        tenant     9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93;
        jwks_file  $TEST_NGINX_ENTRA_JWKS;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*entra_provider "bad": "client_id" is required in \S+nginx\.conf:\d+/

=== TEST 12: common without allowed_tenants
--- http_config
    entra_provider multi {
        tenant     common;
        client_id  6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64;
        jwks_file  $TEST_NGINX_ENTRA_JWKS;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*entra_provider "multi": "allowed_tenants" is required with tenant "common"/

=== TEST 13: organizations without allowed_tenants
--- http_config
    entra_provider multi {
        tenant     organizations;
        client_id  6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64;
        jwks_file  $TEST_NGINX_ENTRA_JWKS;
    }
--- must_die
--- error_log
"allowed_tenants" is required with tenant "organizations"

=== TEST 14: an allowed tenant that is not a GUID
--- http_config
    entra_provider multi {
        tenant          common;
        client_id       6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64;
        allowed_tenants contoso;
        jwks_file       $TEST_NGINX_ENTRA_JWKS;
    }
--- must_die
--- error_log eval
qr/"allowed_tenants" value "contoso" is not a GUID in \S+nginx\.conf:\d+/

=== TEST 15: an unreadable jwks_file
--- http_config
    entra_provider bad {
        tenant     9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93;
        client_id  6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64;
        jwks_file  /nonexistent/keys.json;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"jwks_file" "\/nonexistent\/keys\.json": No such file or directory .* in \S+nginx\.conf:\d+/

=== TEST 16: a jwks_file that is not JSON
--- user_files
>>> keys.json
this is not a key set
--- http_config
    entra_provider bad {
        tenant     9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93;
        client_id  6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64;
        jwks_file  ../html/keys.json;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"jwks_file" "\S+html\/keys\.json": not a JSON object/

=== TEST 17: a jwks_file with no usable key
--- user_files
>>> keys.json
{"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]}
--- http_config
    entra_provider bad {
        tenant     9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93;
        client_id  6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64;
        jwks_file  ../html/keys.json;
    }
--- must_die
--- error_log
no usable signing key (key 0: kid "h": key type "oct" is not used for signatures)

=== TEST 18: unusable keys beside good ones draw a warning
--- user_files
>>> keys.json
{"keys": [{"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"}, {"kty": "EC", "kid": "p", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}
--- http_config
    entra_provider ec {
        tenant     9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93;
        client_id  6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64;
        jwks_file  ../html/keys.json;
        algorithms ES256;
    }
--- config
    location /api { entra_auth ec; proxy_pass http://backend; }
--- error_code: 401
--- error_log
key 0: kid "enc" is not a signing key (skipped)

=== TEST 19: no key fits the algorithms
--- user_files
>>> keys.json
{"keys": [{"kty": "EC", "kid": "p", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}
--- http_config
    entra_provider ec {
        tenant     9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93;
        client_id  6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64;
        jwks_file  ../html/keys.json;
    }
--- config
    location /api { entra_auth ec; proxy_pass http://backend; }
--- error_code: 401
--- error_log
entra_provider "ec": no key in the key set fits "algorithms"

=== TEST 20: an unknown algorithm
--- http_config
    entra_provider bad {
        tenant     9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93;
        client_id  6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64;
        jwks_file  $TEST_NGINX_ENTRA_JWKS;
        algorithms RS256 HS256;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"algorithms" value "HS256" is not supported .* in \S+nginx\.conf:\d+/

=== TEST 21: an authority over plain http to a remote host
--- http_config
    entra_provider bad {
        tenant     9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93;
        client_id  6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64;
        jwks_file  $TEST_NGINX_ENTRA_JWKS;
        authority  http://login.example.com;
    }
--- must_die
--- error_log
"authority" value "http://login.example.com" must be an https:// URL, or http:// on a loopback address

=== TEST 22: an unknown directive inside entra_provider
--- http_config
    entra_provider bad {
        tenant     9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93;
        client_id  6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64;
        jwks_file  $TEST_NGINX_ENTRA_JWKS;
        tennant    common;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*unknown directive "tennant" in entra_provider in \S+nginx\.conf:\d+/

=== TEST 23: a duplicate directive inside entra_provider
--- http_config
    entra_provider bad {
        tenant     9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93;
        tenant     common;
        client_id  6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64;
        jwks_file  $TEST_NGINX_ENTRA_JWKS;
    }
--- must_die
--- error_log
"tenant" directive is duplicate

=== TEST 24: the wrong number of arguments inside entra_provider
--- http_config
    entra_provider bad {
        tenant     9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93 common;
    }
--- must_die
--- error_log
invalid number of arguments in "tenant" directive

=== TEST 25: a leeway that is not a time
--- http_config
    entra_provider bad {
        tenant     9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93;
        client_id  6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64;
        jwks_file  $TEST_NGINX_ENTRA_JWKS;
        leeway     soon;
    }
--- must_die
--- error_log
"leeway" value "soon" is not a time

=== TEST 26: require_permission takes on or off
--- http_config
    entra_provider bad {
        tenant     9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93;
        client_id  6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64;
        jwks_file  $TEST_NGINX_ENTRA_JWKS;
        require_permission yes;
    }
--- must_die
--- error_log
"require_permission" value "yes" must be "on" or "off"

=== TEST 27: two providers of one name
--- http_config
    entra_provider dev {
        tenant     9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93;
        client_id  6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64;
        jwks_file  $TEST_NGINX_ENTRA_JWKS;
    }
    entra_provider dev {
        tenant     9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93;
        client_id  6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64;
        jwks_file  $TEST_NGINX_ENTRA_JWKS;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*duplicate entra_provider "dev" in \S+nginx\.conf:\d+/

=== TEST 28: entra_provider is not allowed in a server
--- config
    entra_provider inner {
        tenant     9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93;
    }
--- must_die
--- error_log
"entra_provider" directive is not allowed here

=== TEST 29: entra_auth twice at one level
--- config
    location /api {
        entra_auth dev;
        entra_auth off;
        proxy_pass http://backend;
    }
--- must_die
--- error_log eval
qr/"entra_auth" directive is duplicate in \S+nginx\.conf:\d+/

=== TEST 30: off and a requirement at one level
--- config
    location /api {
        entra_auth dev;
        entra_require_group g1;
        entra_require_group off;
        proxy_pass http://backend;
    }
--- must_die
--- error_log
"entra_require_group" cannot be both "off" and a requirement at one level

=== TEST 31: entra_require_claim needs a value
--- config
    location /api {
        entra_auth dev;
        entra_require_claim tid;
        proxy_pass http://backend;
    }
--- must_die
--- error_log
"entra_require_claim" needs a claim name and at least one value (or "off")

=== TEST 32: a mutable claim draws a warning
--- config
    location /api {
        entra_auth dev;
        entra_require_claim preferred_username alice@contoso.example;
        proxy_pass http://backend;
    }
--- more_headers eval: bearer()
--- error_code: 200
--- error_log eval
qr/\[warn\] .*entra_require_claim "preferred_username": this claim can be changed by users or admins; authorize on oid, tid, groups or roles instead in \S+nginx\.conf:\d+/

=== TEST 33: every mutable claim draws the warning
--- config
    location /api {
        entra_auth dev;
        entra_require_claim email a;
        entra_require_claim upn a;
        entra_require_claim unique_name a;
        proxy_pass http://backend;
    }
--- error_code: 401
--- error_log
entra_require_claim "email": this claim can be changed
entra_require_claim "upn": this claim can be changed
entra_require_claim "unique_name": this claim can be changed

=== TEST 34: a directive with no arguments
--- config
    location /api {
        entra_auth;
    }
--- must_die
--- error_log
invalid number of arguments in "entra_auth" directive

=== TEST 35: token_cache takes a number of tokens or off
--- http_config eval: provider('token_cache lots;')
--- must_die
--- error_log
"token_cache" value "lots" must be a number of tokens or "off"

=== TEST 36: refresh_on_unknown_kid has a floor: no client may drive back-to-back fetches
--- http_config
    entra_provider fast {
        tenant     9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93;
        client_id  6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64;
        refresh_on_unknown_kid 0;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"refresh_on_unknown_kid" value "0" must be at least 1s in \S+nginx\.conf:\d+/

=== TEST 37: so has refresh
--- http_config
    entra_provider fast {
        tenant     9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93;
        client_id  6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64;
        refresh    0s;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"refresh" value "0s" must be at least 1s in \S+nginx\.conf:\d+/

=== TEST 38: fetch_timeout lies between 100ms and 60s
--- http_config
    entra_provider quick {
        tenant     9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93;
        client_id  6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64;
        fetch_timeout 50ms;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"fetch_timeout" value "50ms" must be between 100ms and 60s in \S+nginx\.conf:\d+/

=== TEST 39: and not above
--- http_config
    entra_provider slow {
        tenant     9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93;
        client_id  6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64;
        fetch_timeout 2m;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"fetch_timeout" value "2m" must be between 100ms and 60s in \S+nginx\.conf:\d+/

=== TEST 40: a provider's name is plain (it goes into realm="...", cookies and Prometheus labels)
--- http_config
    entra_provider "con\"toso" {
        tenant     9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93;
        client_id  6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64;
        jwks_file  $TEST_NGINX_ENTRA_JWKS;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*entra_provider name "con"toso" must be 1 to 64 letters, digits, '_', '\.' or '-' in \S+nginx\.conf:\d+/

=== TEST 41: a requirement where no entra_auth is in force warns once per line: that place is open
--- config
    entra_require_role admin;
    location /a { proxy_pass http://backend; }
    location /b { proxy_pass http://backend; }
    location /c { entra_require_group 0b7e2c5d-4a19-4f3e-8d62-1c9a7f5e3b08; proxy_pass http://backend; }
    location /api { entra_auth dev; proxy_pass http://backend; }
--- request
GET /a
--- error_code: 200
--- grep_error_log eval
qr/\[warn\] .*"entra_require_\w+" in \S+nginx\.conf:\d+ has no effect where no entra_auth is in force/
--- grep_error_log_out eval
qr/\A[^\n]*"entra_require_role" in [^\n]*\n[^\n]*"entra_require_group" in [^\n]*\n\z/

=== TEST 42: no warning where entra_auth off is written
--- config
    entra_auth dev;
    entra_require_role admin;
    location /health { entra_auth off; return 200 "up\n"; }
    location /public { entra_auth off; entra_require_group 0b7e2c5d-4a19-4f3e-8d62-1c9a7f5e3b08; return 200 "up\n"; }
--- request
GET /health
--- response_body
up
--- no_error_log
has no effect where no entra_auth is in force

=== TEST 43: a domain-name tenant with a {tenantid} issuer must name its tenant id: the template matches every tenant
--- http_config
    entra_provider contoso {
        tenant     contoso.onmicrosoft.com;
        client_id  6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64;

        issuer     "https://login.microsoftonline.com/{tenantid}/v2.0";
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*entra_provider "contoso": "issuer" with \{tenantid\} accepts every tenant's tokens with tenant "contoso\.onmicrosoft\.com", a domain name: name its id in "allowed_tenants" \(or say "any"\) in \S+nginx\.conf:\d+/

=== TEST 44: 64 entra_provider blocks are accepted (63 and the default dev)
--- http_config eval: join '', map { EntraTest::provider("p$_") } 1 .. 63
--- config
    location /api {
        entra_auth p63;
        proxy_pass http://backend;
    }
--- more_headers eval: bearer()
--- error_code: 200

=== TEST 45: a 65th is refused
--- http_config eval: join '', map { EntraTest::provider("p$_") } 1 .. 64
--- must_die
--- error_log
more than 64 entra_provider blocks

=== TEST 46: a group that is no object id draws a warning naming file and line (a display name never matches)
--- config
    location /api {
        entra_auth dev;
        entra_require_group Dashboard-Users 5c2a9d0b-7e2f-4d43-8c5a-1b2e3f4a5b77;
        proxy_pass http://backend;
    }
--- more_headers eval: bearer('--groups', '5c2a9d0b-7e2f-4d43-8c5a-1b2e3f4a5b77')
--- error_code: 200
--- error_log eval
qr/\[warn\] .*entra_require_group "Dashboard-Users" is not an object id: .* in \S+nginx\.conf:\d+/
--- no_error_log
entra_require_group "5c2a9d0b

=== TEST 47: a session lifetime over 24 hours draws a warning that says why
--- http_config eval: EntraTest::provider('dev', 'session_lifetime 2d;')
--- more_headers eval: bearer()
--- error_code: 200
--- error_log eval
qr/\[warn\] .*"session_lifetime" "2d" is over 24 hours: a copied session cookie stays usable that long.* in \S+nginx\.conf:\d+/

=== TEST 48: 24 hours exactly draws none
--- http_config eval: EntraTest::provider('dev', 'session_lifetime 24h;')
--- more_headers eval: bearer()
--- error_code: 200
--- no_error_log
is over 24 hours
