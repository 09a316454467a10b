# entra_auth together with nginx's satisfy, allow/deny and auth_basic, the way nginx's own
# access modules combine.
use Test::Nginx::Socket 'no_plan';
use EntraTest;

log_level('info');
use_defaults();
run_tests();

__DATA__

=== TEST 1: satisfy any: an allowed address gets in without a token, and sees no challenge
--- config
    location /api {
        satisfy any;
        allow 127.0.0.1;
        deny all;
        entra_auth dev;
        proxy_pass http://backend;
    }
--- error_code: 200
--- response_headers
!WWW-Authenticate

=== TEST 2: satisfy any: a denied address gets in with a valid token
--- config
    location /api {
        satisfy any;
        deny all;
        entra_auth dev;
        proxy_pass http://backend;
    }
--- request eval: ['GET /api', 'GET /api', 'GET /api']
--- more_headers eval: [bearer(), '', bearer('--aud', 'api://other')]
--- error_code eval: [200, 401, 401]
--- response_headers eval
[undef, 'WWW-Authenticate: Bearer realm="dev"', 'WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="wrong_audience"']

=== TEST 3: satisfy any: a failed requirement with a denied address is still refused
--- config
    location /api {
        satisfy any;
        deny all;
        entra_auth dev;
        entra_require_group admins;
        proxy_pass http://backend;
    }
--- more_headers eval: bearer()
--- error_code_like: ^40[13]$

=== TEST 4: satisfy all: an allowed address still needs a token
--- config
    location /api {
        satisfy all;
        allow 127.0.0.1;
        deny all;
        entra_auth dev;
        proxy_pass http://backend;
    }
--- request eval: ['GET /api', 'GET /api']
--- more_headers eval: ['', bearer()]
--- error_code eval: [401, 200]

=== TEST 5: satisfy any with auth_basic: either a password or a token
--- user_files
>>> htpasswd
ops:{PLAIN}secret
--- config
    location /api {
        satisfy any;
        auth_basic "ops";
        auth_basic_user_file ../html/htpasswd;
        entra_auth dev;
        proxy_pass http://backend;
    }
--- request eval: ['GET /api', 'GET /api', 'GET /api', 'GET /api']
--- more_headers eval
['Authorization: Basic ' . MIME::Base64::encode_base64('ops:secret', ''),
 bearer(),
 'Authorization: Basic ' . MIME::Base64::encode_base64('ops:wrong', ''),
 '']
--- error_code eval: [200, 200, 401, 401]

=== TEST 6: auth_basic and entra_auth both required (satisfy all): a token alone is not enough
--- user_files
>>> htpasswd
ops:{PLAIN}secret
--- config
    location /api {
        auth_basic "ops";
        auth_basic_user_file ../html/htpasswd;
        entra_auth dev;
        proxy_pass http://backend;
    }
--- request eval: ['GET /api', 'GET /api']
--- more_headers eval: [bearer(), 'Authorization: Basic ' . MIME::Base64::encode_base64('ops:secret', '')]
--- error_code eval: [401, 401]

=== TEST 7: satisfy any: an allowed address gets in while the IdP is down, without waiting for keys
--- http_config
    entra_provider down {
        tenant        9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93;
        client_id     6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64;
        authority     http://127.0.0.1:1/;
        fetch_timeout 3s;
    }
--- config
    location /api {
        satisfy any;
        allow 127.0.0.1;
        deny all;
        entra_auth down;
        proxy_pass http://backend;
    }
--- more_headers eval: bearer()
--- error_code: 200
--- response_headers
!Retry-After
--- no_error_log
keys_unavailable
