# Single sign-out: Entra's front-channel logout call names only a `sid`, usually without cookies.
# Each provider records the sids it signed sessions in with, in the shared zone: a call for one
# makes every worker refuse that sid's sessions signed in up to the call, across a reload; a
# later sign-in with the same sid is accepted. A flood of sids never issued signs out no recorded
# session, and one provider's traffic never touches another's record; a sign-in the full record
# cannot take is "unrecorded", and a call for an unknown sid ends the unrecorded sessions.
use strict;
use warnings;

use File::Path qw(make_path);
use File::Spec;
use Test::More;
use EntraTest;
use EntraBrowser;

my $port = ($ENV{TEST_NGINX_PORT} || 1984) + 60;
my $prefix = ($ENV{TEST_NGINX_SERVROOT} || 't/servroot') . '-frontchannel';
my $origin = "http://127.0.0.1:$port";

signin_prefix($prefix);
browser_origin($origin);
# The records of sessions are kept across restarts in the key cache's directory.
my $keys = File::Spec->rel2abs("$prefix/keys");
make_path($keys);
chmod 0700, $keys;

# The configuration, with extra lines for the provider "live" (a reload rewrites it).
sub configure {
    my @live = @_;
    my $provider = "    entra_shared_zone zone=signout:256k;\n    entra_keys_cache_path $keys;\n"
        . live_provider('client_secret_file secret;', 'session_key_file session.keys;', @live)
        . (live_provider('client_secret_file secret;', 'session_key_file session.keys;', 'redirect_uri /other/callback;',
            'frontchannel_logout_uri /other/logout;', 'session_cookie other;') =~ s/entra_provider live/entra_provider other/r)
        . (live_provider('client_secret_file secret;', 'session_key_file session.keys;', 'redirect_uri /tiny/callback;',
            'frontchannel_logout_uri /tiny/logout;', 'session_cookie tiny;', 'session_record 16;')
            =~ s/entra_provider live/entra_provider tiny/r);
    write_nginx_conf($prefix, $port, $provider, workers => 2, listen => 'reuseport', server => <<"LOCATIONS");
        add_header X-Worker \$pid always;
        location /app {
            entra_auth live session;
            proxy_pass http://127.0.0.1:$port/who;
        }
        location /other { entra_auth other session; proxy_pass http://127.0.0.1:$port/who; }
        location /tiny { entra_auth tiny session; proxy_pass http://127.0.0.1:$port/who; }
        location /who { return 200 "who=\$entra_oid\\n"; }
        location = /status { entra_status; }
LOCATIONS
}
configure();
my $pid = run_nginx($prefix, $port, 'approve?user=alice');


# Sends the request until each of the two workers has answered it; returns the statuses seen.
sub from_every_worker {
    my ($jar, $path) = @_;
    my (%workers, %statuses);
    for (1 .. 200) {
        my $res = request('GET', $path // '/app', $jar, Accept => 'application/json');
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
like(log_text(), qr/\[info\] .*front-channel logout: provider "live", sid \Q$sid\E: its sessions end/, 'logged at info');
is(from_every_worker($alice), '401', 'every worker refuses the session now');
like(log_text(), qr/access denied: session_revoked/, 'as session_revoked');
is(navigate('/app', $alice)->{status}, 302, 'a navigation is sent to sign in again');

# --- A later sign-in with the same sid is accepted (Entra's own session survives).
my (undef, $again) = sign_in('/app');
my ($second_sid) = log_text() =~ /.*signed in: provider "live", oid \S+, tid \S+, sid ([0-9a-f-]{36})/s;
is($second_sid, $sid, 'the new session has the same sid');
is(from_every_worker($again), '200', 'and is accepted');

# --- Across a reload: the record lives in the shared zone.
reload_nginx($pid, $prefix, 1);
is(from_every_worker($alice), '401', 'the revoked session stays refused after a reload');
is(from_every_worker($again), '200', 'the later one stays accepted');

# --- A reload that changes the provider's metadata URL (its keys get a new slot) keeps its record.
configure("metadata_url $ENV{TEST_NGINX_IDP_URL}/$TENANT/v2.0/.well-known/openid-configuration?reloaded=1;");
reload_nginx($pid, $prefix, 1);
is(from_every_worker($alice), '401', 'the revoked session stays refused when metadata_url changes');
is(from_every_worker($again), '200', 'the later one stays accepted');

# --- A reload that narrows allowed_tenants ends the sessions of the tenants it leaves out.
configure("allowed_tenants $OTHER_TENANT;");
reload_nginx($pid, $prefix, 1);
is(from_every_worker($again), '401', 'a session of a tenant no longer allowed is refused');
like(log_text(), qr/access denied: tenant_not_allowed \(provider "live"/, 'as tenant_not_allowed');
configure();
reload_nginx($pid, $prefix, 1);
is(from_every_worker($again), '200', 'and accepted again once it is allowed: nothing was bound into the seal');

# --- Another provider's record is its own.
my (undef, $other) = sign_in('/other');
is(from_every_worker($other, '/other'), '200', 'a session of the other provider');
is(request('GET', "/other/logout?sid=$sid")->{status}, 200, 'its own front-channel URL ends it');
is(from_every_worker($other, '/other'), '401', 'refused');
is(from_every_worker($again), '200', 'and the first provider\'s session with the same sid is untouched');

# --- A flood of sids this instance never issued signs out nobody.
my $flooded = 0;
for my $n (1 .. 600) {
    $flooded++ if request('GET', "/.entra/logout?sid=flood-$n")->{status} == 200;
}
is($flooded, 600, 'the flood is answered');
like(log_text(), qr/\[warn\] .*provider "live": a front-channel logout named a sid this instance never recorded: its watermark rose/,
    'the watermark that rose is logged at warn, naming the provider');
is(scalar(() = log_text() =~ /never recorded: its watermark rose/g), 1, 'once a minute at most');
is(from_every_worker($alice), '401', 'the revoked session is not revived');
is(from_every_worker($again), '200', 'a recorded session survives the flood');
is(from_every_worker($other, '/other'), '401', 'the other provider\'s revoked session stays refused');
my $status = request('GET', '/status')->{content};
like($status, qr/"frontchannel_logouts":600\b/, 'entra_status counts the front-channel logouts (since the metadata_url change renewed the counters)');
like($status, qr/"name":"live".*?"session_record":\{[^}]*"capacity":256\b/,
    'and the record\'s capacity (half the room the 256k zone has beside its fixed part, shared by three providers with their records of states, in a power of two)');
like($status, qr/"name":"live".*?"session_record":\{[^}]*"unknown_logouts":600\b/, 'and the calls for unknown sids');
like($status, qr/"name":"live".*?"session_record":\{[^}]*"entries":1\b/, 'one sid recorded');
like($status, qr/"name":"live".*?"session_record":\{[^}]*"revoked":1\b/, 'one revoked');
like($status, qr/"name":"live".*?"session_record":\{[^}]*"watermark":\d+/, 'with the watermark');
like($status, qr/"name":"other".*?"session_record":\{[^}]*"unknown_logouts":0\b/, 'the other provider saw none of the flood');
like($status, qr/"cache_hits":[1-9]\d*,/, 'sessions seen again were found opened in the worker\'s cache');
like($status, qr/"sessions_accepted":[1-9]/, 'and counted as accepted');
my $metrics = request('GET', '/status?format=prometheus')->{content};
like($metrics, qr/^entra_unknown_logouts_total\{provider="live"\} 600$/m, 'in Prometheus\' format too');

# --- A full record: the sign-in is unrecorded, and a call for its sid ends the unrecorded ones only.
my %tiny;
for my $n (1 .. 17) {
    idp_admin("approve?user=user$n");
    (undef, $tiny{$n}) = sign_in('/tiny');
}
idp_admin('approve?user=alice');
like(log_text(), qr/signed in: provider "tiny", .* \(unrecorded: the session record is full\)/, 'the 17th sign-in is unrecorded');
is(from_every_worker($tiny{17}, '/tiny'), '200', 'and still gets its session');
like(request('GET', '/status')->{content}, qr/"name":"tiny".*?"unrecorded_sign_ins":1\b/, 'counted');
my @sids = log_text() =~ /signed in: provider "tiny", oid \S+, tid \S+, sid ([0-9a-f-]{36})/g;
is(scalar(@sids), 17, 'seventeen sids');
is(request('GET', "/tiny/logout?sid=$sids[0]")->{status}, 200, 'a recorded sid is called');
is(from_every_worker($tiny{1}, '/tiny'), '401', 'its session ends');
is(from_every_worker($tiny{2}, '/tiny'), '200', 'the others stay');
is(from_every_worker($tiny{17}, '/tiny'), '200', 'the unrecorded one too, until a call could be its');
is(request('GET', "/tiny/logout?sid=$sids[16]")->{status}, 200, 'the unrecorded one\'s sid is called');
is(from_every_worker($tiny{17}, '/tiny'), '401', 'it ends (with every unrecorded session signed in before)');
is(from_every_worker($tiny{2}, '/tiny'), '200', 'a recorded one stays');

# --- A restart: the records kept on disk come back (entra_keys_cache_path).
ok(-s "$keys/live.sessions", 'the record of sessions is kept in the key cache\'s directory');
is((stat "$keys/live.sessions")[2] & 0777, 0600, 'mode 0600');
kill 'TERM', $pid;
waitpid $pid, 0;
my $restarted = start_nginx($prefix, 'conf/nginx.conf', $port);
END { kill 'TERM', $restarted if $restarted }
is(from_every_worker($alice), '401', 'a session a front-channel call ended stays refused after a restart');
is(from_every_worker($again), '200', 'a recorded session stays accepted');
$flooded = 0;
$flooded += request('GET', "/.entra/logout?sid=after-restart-$_")->{status} == 200 for 1 .. 20;
is($flooded, 20, 'a flood after the restart');
is(from_every_worker($again), '200', 'signs it out no more than before: it is still recorded');
like(request('GET', '/status')->{content}, qr/"name":"live".*?"session_record":\{[^}]*"revoked":1\b/, 'entra_status shows the record back');

unlike(log_text(), qr/\[(alert|crit|emerg)\]/, 'no alert, crit or emerg line in the error log');

done_testing();
