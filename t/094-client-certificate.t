# client_certificate (private_key_jwt): the code exchange is authenticated by an assertion signed
# PS256 with the app's key, which the development IdP checks against the certificate registered
# with it (thumbprint, signature, audience, issuer, lifetime, a jti used once).
use strict;
use warnings;

use Test::More;
use EntraTest;
use EntraBrowser;

my $port = ($ENV{TEST_NGINX_PORT} || 1984) + 80;
my $prefix = ($ENV{TEST_NGINX_SERVROOT} || 't/servroot') . '-certificate';
my $origin = "http://127.0.0.1:$port";

signin_prefix($prefix);
browser_origin($origin);
live_idp('client-certificate', '--cert', "$prefix/conf/app.crt", '--key', "$prefix/conf/app.key");
is((stat "$prefix/conf/app.key")[2] & 0777, 0600, 'the IdP writes the key readable by its owner only');

my $provider = live_provider('client_certificate app.crt app.key;', 'session_key_file session.keys;');
write_nginx_conf($prefix, $port, $provider, server => <<"LOCATIONS");
        location /app { entra_auth live session; proxy_pass http://127.0.0.1:$port/who; }
        location /who { return 200 "ok\\n"; }
LOCATIONS
my $pid = run_nginx($prefix, $port, 'approve?user=bob');


my ($callback, $jar) = sign_in('/app');
is($callback->{status}, 302, 'the IdP takes the signed assertion');
is(request('GET', '/app', $jar, Accept => 'application/json')->{status}, 200, 'and the session works');
like(log_text(), qr/signed in: provider "live"/, 'signed in');
unlike(log_text(), qr/client_assertion|eyJ/, 'no assertion or token in the log');

# Another certificate registered at the IdP: the module's assertions no longer verify.
live_idp('client-certificate', '--cert', "$prefix/other.crt", '--key', "$prefix/other.key");
my ($refused) = sign_in('/app');
is($refused->{status}, 401, 'an assertion signed by a key the IdP does not know is refused');
like(log_text(), qr/sign-in failed: code_rejected \(provider "live"\): the token endpoint refused the code \(HTTP 400, invalid_client\)/,
    'code_rejected, invalid_client');

unlike(log_text(), qr/\[(alert|crit|emerg)\]/, 'no alert, crit or emerg line in the error log');

done_testing();
