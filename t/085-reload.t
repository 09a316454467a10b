# Reloads that turn one provider into another. The shared zone's slots change hands only once a
# new configuration is committed: a reload that fails changes nothing, and a worker that outlives
# a reload never writes its provider's keys and issuers into the slot of another provider.
#
# Provider P is the IdP's own tenant (issuer .../TENANT/v2.0); Q is the same name turned
# multi-tenant (`organizations`, issuer .../{tenantid}/v2.0), which also accepts another tenant's
# tokens. Q judging with P's issuers would refuse those.
use strict;
use warnings;

use File::Path qw(make_path remove_tree);
use HTTP::Tiny;
use IO::Socket::INET;
use Test::More;
use Time::HiRes qw(time);
use EntraTest;

my $port = ($ENV{TEST_NGINX_PORT} || 1984) + 30;
my $prefix = ($ENV{TEST_NGINX_SERVROOT} || 't/servroot') . '-reload';
# A new connection per request: a kept-alive one would stay with a worker of the old configuration.
my $http = HTTP::Tiny->new(timeout => 20, keep_alive => 0);

my $P = live_provider('fetch_timeout 10s;');
my $Q = live_provider('fetch_timeout 10s;', 'tenant organizations;', "allowed_tenants $TENANT $OTHER_TENANT;");

sub configure {
    my ($provider, $extra_listen) = @_;
    write_nginx_conf($prefix, $port, $provider, level => 'debug',
        server => $extra_listen ? "        listen 127.0.0.1:$extra_listen;" : '');
}

sub log_text { open my $in, '<', "$prefix/logs/error.log" or return ''; local $/; <$in> }

sub status_of {
    my ($token) = @_;
    my $res = $http->get("http://127.0.0.1:$port/api", { headers => { Authorization => "Bearer $token" } });
    diag($res->{content}) if $res->{status} == 599;
    return $res->{status};
}

remove_tree($prefix);
make_path("$prefix/conf", "$prefix/logs");
idp_admin('reset');
configure($P);
my $pid = start_nginx($prefix, 'conf/nginx.conf', $port);
END { kill 'TERM', $pid if $pid }

my $own = live_idp('mint');
my $other = live_idp('mint', '--tid', $OTHER_TENANT);
is(status_of($own), 200, 'P lets its own tenant in');
is(status_of($other), 401, 'and not another tenant');

# --- A reload that fails: P edited into Q, with a listen that cannot bind. nginx has set up the
# zone for the new configuration before it fails to open the socket.
my $taken = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 1, ReuseAddr => 0) or die $!;
my $taken_port = $taken->sockport;
configure($Q, $taken_port);
kill 'HUP', $pid;
my $deadline = time + 10;
until (log_text() =~ /bind\(\) to 127\.0\.0\.1:$taken_port failed/) {
    die "the reload did not fail as it should\n" if time > $deadline;
    select undef, undef, undef, 0.02;
}
pass('the reload failed: the old workers go on with P');

# P still follows a key rotation: its slot is still its own.
my $rotated = live_idp('mint', '--key', live_idp('add-key'));
is(status_of($rotated), 200, 'after the failed reload, P follows a rotation');
is(status_of($other), 401, 'and is still P');

# The fixed reload: Q judges with its own issuers from its first request.
close $taken;
configure($Q);
reload_nginx($pid, $prefix, 'alone');
is(status_of($other), 200, "after the fixed reload, Q lets the other tenant in (its own issuers, not P's)");
is(status_of($own), 200, 'and the IdP tenant');

# --- A worker that outlives a reload finishes a fetch after its slot went to another provider.
configure($P);
reload_nginx($pid, $prefix, 'alone');
is(status_of($own), 200, 'P again');
idp_admin('reset');
idp_admin("hold?path=/$TENANT/");
my $late = live_idp('mint', '--key', live_idp('add-key'));
my $parked = send_api_request($port, $late);
$deadline = time + 10;
until (JSON::PP::decode_json(idp_admin('stats'))->{metadata} >= 1) {
    die "the fetch did not reach the IdP\n" if time > $deadline;
    select undef, undef, undef, 0.02;
}
# The fetch is under way (held by the IdP) while a reload gives P's slot to Q.
configure($Q);
reload_nginx($pid, $prefix);
is(status_of($other), 200, 'Q fetched its own keys meanwhile');
idp_admin('release');
my $answer = read_answer($parked, 20);
like($answer, qr{^HTTP/1\.1 200 }, "the old worker's parked request got in with the keys it fetched");
like(log_text(), qr/provider "live": key set fetched for this worker only: a reload gave its slot away/,
    'which it kept for itself');
is(status_of($other), 200, "Q still judges with its own issuers");

kill 'TERM', $pid;
waitpid $pid, 0;
$pid = undef;
done_testing();
