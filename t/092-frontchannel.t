# Single sign-out: Entra's front-channel logout call names only a `sid`, usually without cookies.
# It goes into a deny-list in the shared zone: every worker refuses that sid's sessions signed in
# up to the call, across a reload; a later sign-in with the same sid is accepted; a flood of
# random sids overflows the list into a watermark, which fails closed.
use strict;
use warnings;

use Test::More;
use EntraTest;
use EntraBrowser;

my $port = ($ENV{TEST_NGINX_PORT} || 1984) + 60;
my $prefix = ($ENV{TEST_NGINX_SERVROOT} || 't/servroot') . '-frontchannel';
my $origin = "http://127.0.0.1:$port";

signin_prefix($prefix);
browser_origin($origin);
# A small zone, so that a flood overflows the deny-list quickly.
my $provider = "    entra_shared_zone zone=signout:128k;\n"
    . live_provider('client_secret_file secret;', 'session_key_file session.keys;');
write_nginx_conf($prefix, $port, $provider, workers => 2, listen => 'reuseport', server => <<"LOCATIONS");
        add_header X-Worker \$pid always;
        location /app {
            entra_auth live session;
            proxy_pass http://127.0.0.1:$port/who;
        }
        location /who { return 200 "who=\$entra_oid\\n"; }
        location = /status { entra_status; }
LOCATIONS
my $pid = run_nginx($prefix, $port, 'approve?user=alice');


# Sends the request until each of the two workers has answered it; returns the statuses seen.
sub from_every_worker {
    my ($jar) = @_;
    my (%workers, %statuses);
    for (1 .. 200) {
        my $res = request('GET', '/app', $jar, Accept => 'application/json');
        $workers{ $res->{headers}{'x-worker'} // '?' } = 1;
        $statuses{ $res->{status} } = 1;
        last if keys %workers >= 2;
    }
    is(scalar(keys %workers), 2, 'both workers answered');
    return join ',', sort keys %statuses;
}

my (undef, $alice) = sign_in('/app');
is(from_every_worker($alice), '200', 'the session is accepted by every worker');
my ($sid) = log_text() =~ /signed in: provider "live", oid \S+, tid \S+, sid ([0-9a-f-]{36})/;
ok($sid, 'the sign-in logged its sid');

# --- What the endpoint refuses.
is(request('GET', '/.entra/logout?sid=' . ('a' x 129))->{status}, 400, 'a sid over 128 bytes');
is(request('GET', '/.entra/logout?sid=a%20b')->{status}, 400, 'a sid outside [A-Za-z0-9._-]');
is(request('GET', '/.entra/logout')->{status}, 400, 'no sid');
is(request('GET', "/.entra/logout?sid=$sid&sid=other")->{status}, 400, 'two sids');
is(request('POST', "/.entra/logout?sid=$sid")->{status}, 405, 'a POST');
is(from_every_worker($alice), '200', 'none of them ended the session');

# --- Entra's call, through the IdP's end-session page (an iframe), without cookies.
my $page = request('GET', "$ENV{TEST_NGINX_IDP_URL}/$TENANT/oauth2/v2.0/logout?post_logout_redirect_uri=$origin/",
    undef, Cookie => 'idp_signin=alice');
my ($frontchannel) = $page->{content} =~ /<iframe hidden src="([^"]+)"/;
is($frontchannel, "$origin/.entra/logout?sid=$sid", "the IdP's end-session page calls the front-channel logout URL with the sid");
my $call = request('GET', $frontchannel);
is($call->{status}, 200, 'Entra gets its 200');
is($call->{headers}{'cache-control'}, 'no-store', 'not cached');
is($call->{headers}{'referrer-policy'}, 'no-referrer', 'sends no Referer onwards');
is($call->{headers}{'content-security-policy'}, undef, 'and may be framed: Entra calls it from an iframe');
like(log_text(), qr/\[info\] .*front-channel logout: provider "live", sid \Q$sid\E \(1 in the deny-list\)/, 'logged at info');
is(from_every_worker($alice), '401', 'every worker refuses the session now');
like(log_text(), qr/access denied: session_revoked/, 'as session_revoked');
is(navigate('/app', $alice)->{status}, 302, 'a navigation is sent to sign in again');

# --- A later sign-in with the same sid is accepted (Entra's own session survives).
my (undef, $again) = sign_in('/app');
my ($second_sid) = log_text() =~ /.*signed in: provider "live", oid \S+, tid \S+, sid ([0-9a-f-]{36})/s;
is($second_sid, $sid, 'the new session has the same sid');
is(from_every_worker($again), '200', 'and is accepted');

# --- Across a reload: the deny-list lives in the shared zone.
reload_nginx($pid, $prefix, 1);
is(from_every_worker($alice), '401', 'the revoked session stays refused after a reload');
is(from_every_worker($again), '200', 'the later one stays accepted');

# --- A flood of random sids overflows the list into a watermark: it fails closed.
my $flooded = 0;
for my $n (1 .. 600) {
    $flooded++ if request('GET', "/.entra/logout?sid=flood-$n")->{status} == 200;
}
is($flooded, 600, 'the flood is answered');
like(log_text(), qr/\[warn\] .*provider "live": the front-channel logout deny-list is full/, 'the overflow is logged at warn');
is(scalar(() = log_text() =~ /deny-list is full/g), 1, 'once a minute at most');
is(from_every_worker($alice), '401', 'the revoked session is not revived');
is(from_every_worker($again), '401', 'sessions signed in before the watermark are refused too');
my (undef, $after) = sign_in('/app');
is(from_every_worker($after), '200', 'a session signed in after the flood is accepted');
my $status = request('GET', '/status')->{content};
like($status, qr/"frontchannel_logouts":601\b/, 'entra_status counts the front-channel logouts');
like($status, qr/"deny_evictions":[1-9]/, 'and the evictions');
like($status, qr/"cache_hits":[1-9]\d*,/, 'sessions seen again were found opened in the worker\'s cache');
like($status, qr/"sessions_accepted":[1-9]/, 'and counted as accepted');

unlike(log_text(), qr/\[(alert|crit|emerg)\]/, 'no alert, crit or emerg line in the error log');

done_testing();
