# What needs more than one request at a time, reloads or a killed worker: a request parked while
# keys are fetched never blocks its worker; a reload keeps the keys (no 503 window, no fetch)
# unless the key source changed; a worker killed during a fetch wedges nobody.
use strict;
use warnings;

use File::Path qw(make_path remove_tree);
use HTTP::Tiny;
use Test::More;
use Time::HiRes qw(time);
use EntraTest;

my $port = ($ENV{TEST_NGINX_PORT} || 1984) + 20;
my $prefix = ($ENV{TEST_NGINX_SERVROOT} || 't/servroot') . '-parked';
my $http = HTTP::Tiny->new(timeout => 10);

remove_tree($prefix);
make_path("$prefix/conf", "$prefix/logs");
write_nginx_conf($prefix, $port, live_provider('refresh_on_unknown_kid 1s;', 'fetch_timeout 2s;'),
    server => '        location /fast { return 200 "fast\\n"; }');

sub get { my ($path, $token) = @_; $http->get("http://127.0.0.1:$port$path", { headers => $token ? { Authorization => "Bearer $token" } : {} }) }
sub stats { JSON::PP::decode_json(idp_admin('stats')) }

idp_admin('reset');
my $pid = start_nginx($prefix, 'conf/nginx.conf', $port);
# Whatever happens below, nginx does not outlive the test.
END { kill 'TERM', $pid if $pid }
my $token = live_idp('mint');
is(get('/api', $token)->{status}, 200, 'keys fetched at start');

# A rotation while the IdP is slow: the request with the new key waits for the fetch...
my $kid = live_idp('add-key');
my $rotated = live_idp('mint', '--key', $kid);
idp_admin('mode?set=slow&ms=400');
my $parked = send_api_request($port, $rotated);
# ...and meanwhile the same single worker answers others at once.
my @fast;
my $until = time + 0.8;
while (time < $until) {
    my $started = time;
    my $res = get('/fast');
    push @fast, [$res->{status}, time - $started];
}
ok(@fast >= 3, scalar(@fast) . ' requests answered while one was parked');
ok(!(grep { $_->[0] != 200 || $_->[1] > 0.2 } @fast), 'each in under 200 ms') or diag explain \@fast;
my $answer = read_answer($parked, 10);
like($answer, qr{^HTTP/1\.1 200 }, 'the parked request got in once the new keys came');
idp_admin('mode?set=normal');

# A reload keeps the keys: the new worker answers at once, with no fetch.
idp_admin('reset');
reload_nginx($pid, $prefix, "alone");
my $started = time;
is(get('/api', $rotated)->{status}, 200, 'the new worker lets a valid token in');
ok(time - $started < 1, 'at once, without waiting for keys');
is(stats()->{keys}, 0, 'and without fetching the key set again');

# A provider whose key source changed starts afresh at a reload: its keys are fetched again.
{
    open my $in, '<', "$prefix/conf/nginx.conf" or die $!;
    my $text = do { local $/; <$in> };
    $text =~ s{(authority\s+\S+?);}{$1;\n        metadata_url $ENV{TEST_NGINX_IDP_URL}/$EntraTest::TENANT/v2.0/.well-known/openid-configuration?appid=$EntraTest::CLIENT_ID;};
    open my $out, '>', "$prefix/conf/nginx.conf" or die $!;
    print $out $text;
}
idp_admin('reset');
my $victim = reload_nginx($pid, $prefix, "alone");
is(get('/api', $rotated)->{status}, 200, 'a changed metadata_url: keys fetched again, then in');
is(stats()->{keys}, 1, 'with one new fetch');

# A worker killed in the middle of a fetch wedges nobody: the fetch it owned goes stale and the
# next worker fetches.
idp_admin('mode?set=slow&ms=3000');
my $third = live_idp('mint', '--key', live_idp('add-key'));
my $waiting = send_api_request($port, $third);
# The request has reached the worker and started the fetch once the IdP counts it.
my $deadline = time + 10;
until (stats()->{metadata} >= 1) {
    die "the fetch did not start\n" if time > $deadline;
    select undef, undef, undef, 0.02;
}
kill 'KILL', $victim;
idp_admin('mode?set=normal');
my $status = 0;
$deadline = time + 60;
until ($status == 200) {
    die "no worker fetched the new key after the owner died\n" if time > $deadline;
    $status = get('/api', $third)->{status};
}
pass('after the owner was killed, another worker fetched the key set and let the token in');
ok(get('/fast')->{status} == 200, 'nginx answers as before');

kill 'TERM', $pid;
waitpid $pid, 0;
$pid = undef;
done_testing();
