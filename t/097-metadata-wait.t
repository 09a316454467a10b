# Before the provider's metadata was ever fetched there is no authorize endpoint: a navigation
# waits for the first fetch like a bearer request waits for keys (up to fetch_timeout), then gets
# 503 keys_unavailable with Retry-After; a script gets its 401 at once; once the metadata comes,
# navigations are sent to sign in.
use strict;
use warnings;

use Test::More;
use EntraTest;
use EntraBrowser;

my $port = ($ENV{TEST_NGINX_PORT} || 1984) + 110;
my $prefix = ($ENV{TEST_NGINX_SERVROOT} || 't/servroot') . '-metadata-wait';
my $origin = "http://127.0.0.1:$port";

signin_prefix($prefix);
browser_origin($origin);
# The IdP does not answer requests of a closed gate: the first fetch cannot succeed until it opens.
my $provider = live_provider('client_secret_file secret;', 'session_key_file session.keys;', 'fetch_timeout 1s;',
    "metadata_url $ENV{TEST_NGINX_IDP_URL}/$TENANT/v2.0/.well-known/openid-configuration?gate=first-fetch;");
write_nginx_conf($prefix, $port, $provider, server => <<"LOCATIONS");
        location /app { entra_auth live session; proxy_pass http://127.0.0.1:$port/who; }
        location /who { return 200 "ok\\n"; }
LOCATIONS
my $pid = run_nginx($prefix, $port);

is(request('GET', '/app', undef, Accept => 'application/json')->{status}, 401, 'a script gets its 401 at once');
my $waited = navigate('/app');
is($waited->{status}, 503, 'a navigation that waited for the first fetch in vain gets 503');
is($waited->{headers}{'retry-after'}, '5', 'with Retry-After');
like(log_text(), qr/\[error\] .*access denied: keys_unavailable \(provider "live"\)/, 'logged at error');

idp_admin('open?gate=first-fetch');
my $status = 0;
for (1 .. 20) {
    $status = navigate('/app')->{status};
    last if $status == 302;
}
is($status, 302, 'once the metadata is fetched, a navigation is sent to sign in');
like(log_text(), qr/provider "live": key set fetched/, 'after the fetch');

unlike(log_text(), qr/\[(alert|crit|emerg)\]/, 'no alert, crit or emerg line in the error log');

done_testing();
