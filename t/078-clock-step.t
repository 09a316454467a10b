# The refresh schedule runs on the monotonic clock: a wall clock stepped backwards (NTP, a VM
# restored from a snapshot) stalls neither the periodic refresh nor the one an unknown `kid`
# forces. nginx runs under libfaketime, which steps its wall clock and leaves CLOCK_MONOTONIC be.
use strict;
use warnings;

use File::Path qw(make_path remove_tree);
use HTTP::Tiny;
use JSON::PP;
use Test::More;
use Time::Local qw(timegm);
use EntraTest;

my ($faketime) = grep { -e } map { "/usr/lib/$_/faketime/libfaketimeMT.so.1" }
    'x86_64-linux-gnu', 'aarch64-linux-gnu';
plan skip_all => 'libfaketime is not installed (scripts/test installs it)' unless $faketime;

my $port = ($ENV{TEST_NGINX_PORT} || 1984) + 130;
my $prefix = ($ENV{TEST_NGINX_SERVROOT} || 't/servroot') . '-clock';
my $http = HTTP::Tiny->new(timeout => 10);

remove_tree($prefix);
make_path("$prefix/conf", "$prefix/logs");
my $forced = live_provider('refresh 1h;', 'refresh_on_unknown_kid 1s;') =~ s/entra_provider live/entra_provider forced/r;
# nginx gives its workers only the environment variables `env` names.
my $env = join '', map { "env $_;\n" } qw(FAKETIME_TIMESTAMP_FILE FAKETIME_NO_CACHE FAKETIME_DONT_FAKE_MONOTONIC);
write_nginx_conf($prefix, $port, live_provider('refresh 1s;') . $forced, main => $env, server => <<"LOCATIONS");
        location /forced { entra_auth forced; proxy_pass http://127.0.0.1:$port/backend; }
        location = /status { entra_status; }
LOCATIONS

my $clock = "$prefix/faketime";
sub set_clock { open my $out, '>', $clock or die $!; print $out "$_[0]\n"; close $out }
set_clock('+0');
my $pid;
{
    local $ENV{LD_PRELOAD} = $faketime;
    local $ENV{FAKETIME_TIMESTAMP_FILE} = $clock;
    local $ENV{FAKETIME_NO_CACHE} = 1;
    local $ENV{FAKETIME_DONT_FAKE_MONOTONIC} = 1;
    idp_admin('reset');
    $pid = start_nginx($prefix, 'conf/nginx.conf', $port);
}
END { kill 'TERM', $pid if $pid }

sub fetches {
    my $status = decode_json($http->get("http://127.0.0.1:$port/status")->{content});
    return { map { $_->{name} => $_->{counters}{fetches} } @{ $status->{providers} } };
}
sub forced_get {
    my ($token) = @_;
    $http->get("http://127.0.0.1:$port/forced", { headers => { Authorization => "Bearer $token" } })->{status};
}
# Polls `check` (every 50 ms, up to `seconds`) until it holds.
sub eventually {
    my ($seconds, $check) = @_;
    my $deadline = time + $seconds;
    until ($check->()) {
        return 0 if time > $deadline;
        select undef, undef, undef, 0.05;
    }
    return 1;
}

# nbf would lie an hour ahead of the stepped clock.
my @mint = ('--unset', 'nbf');
ok(eventually(10, sub { my $f = fetches(); ($f->{live} // 0) >= 1 && ($f->{forced} // 0) >= 1 }),
    'both providers fetched their keys');
# A refresh forced by an unknown kid, before the step: the next may come a second later.
my $first = live_idp('mint', @mint, '--key', live_idp('add-key'));
is(forced_get($first), 200, 'an unknown kid forced a refresh and got in');

set_clock('-3600');
# nginx sees the step at its next time update: its Date header says when.
ok(eventually(10, sub {
    my $date = $http->get("http://127.0.0.1:$port/status")->{headers}{date} // '';
    my %month; @month{qw(Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec)} = 0 .. 11;
    my ($d, $m, $y, $hh, $mm, $ss) = $date =~ /^\w+, (\d+) (\w+) (\d+) (\d+):(\d+):(\d+) GMT$/ or return 0;
    timegm($ss, $mm, $hh, $d, $month{$m}, $y) < time - 3000;
}), 'nginx runs an hour behind');
my $before = fetches()->{live};
ok(eventually(10, sub { fetches()->{live} >= $before + 2 }),
    'with the wall clock stepped back an hour, the periodic refresh goes on');
my $second = live_idp('mint', @mint, '--key', live_idp('add-key'));
ok(eventually(10, sub { forced_get($second) == 200 }), 'and an unknown kid still forces a refresh');

kill 'TERM', $pid;
waitpid $pid, 0;
undef $pid;
done_testing();
