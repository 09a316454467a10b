# entra_keys_cache_path: a restart while the IdP cannot be reached serves with the keys fetched
# before (from the first request on), unless the cache file is another provider's, too old, or
# the directory could be written by others (nginx -t refuses it).
use strict;
use warnings;

use File::Path qw(make_path remove_tree);
use File::Spec;
use HTTP::Tiny;
use JSON::PP;
use Test::More;
use EntraTest;

my $port = ($ENV{TEST_NGINX_PORT} || 1984) + 140;
my $prefix = ($ENV{TEST_NGINX_SERVROOT} || 't/servroot') . '-keycache';
my $dir = "$prefix/keys";
my $file = "$dir/live.keys.json";
my $http = HTTP::Tiny->new(timeout => 10);
my $nginx = $ENV{TEST_NGINX_BINARY} || 'nginx';

remove_tree($prefix);
make_path("$prefix/conf", "$prefix/logs", $dir);
chmod 0700, $dir;
my $abs_dir = File::Spec->rel2abs($dir);
write_nginx_conf($prefix, $port, "    entra_keys_cache_path $abs_dir;\n" . live_provider());

# What nginx logged: while reading its configuration it writes to stderr, then to error.log.
sub log_text {
    my $text = '';
    for my $name ('stderr.log', 'error.log') {
        open my $in, '<', "$prefix/logs/$name" or next;
        local $/;
        $text .= <$in>;
    }
    return $text;
}
sub nginx_t { my $out = `$nginx -p $prefix/ -c conf/nginx.conf -t 2>&1`; ($? >> 8, $out) }
sub api { $http->get("http://127.0.0.1:$port/api", { headers => { Authorization => 'Bearer ' . live_idp('mint') } }) }
sub run_once {
    my $pid = start_nginx($prefix, 'conf/nginx.conf', $port);
    my $res = api();
    kill 'TERM', $pid;
    waitpid $pid, 0;
    return $res;
}
# Polls `check` (every 20 ms, up to 10 s) until it holds.
sub eventually {
    my ($check) = @_;
    my $deadline = time + 10;
    until ($check->()) { return 0 if time > $deadline; select undef, undef, undef, 0.02 }
    return 1;
}
END { idp_admin('mode?set=normal') }

# --- A directory others could write, or another user's, is refused by nginx -t.
chmod 0777, $dir;
my ($code, $out) = nginx_t();
isnt($code, 0, 'nginx -t refuses a directory others can write');
like($out, qr/\[emerg\] .*entra_keys_cache_path "[^"]+": it is writable by group or others \(mode 777\).* in \S+nginx\.conf:\d+/,
    'naming the directive, the reason, the file and the line');
chmod 0700, $dir;
SKIP: {
    skip 'not root: cannot give the directory to another user', 2 unless $> == 0;
    chown 65534, 65534, $dir;
    ($code, $out) = nginx_t();
    isnt($code, 0, 'nginx -t refuses a directory another user owns');
    like($out, qr/entra_keys_cache_path "[^"]+": it is owned by uid 65534, neither root nor the worker user/, 'and says so');
    chown 0, 0, $dir;
}
($code) = nginx_t();
is($code, 0, 'a directory of the worker user, mode 0700, is accepted');

# --- A fetch writes the cache: mode 0600.
idp_admin('reset');
my $pid = start_nginx($prefix, 'conf/nginx.conf', $port);
ok(eventually(sub { -s $file }), 'the worker that fetched wrote the key cache');
is((stat $file)[2] & 0777, 0600, 'mode 0600');
is(api()->{status}, 200, 'and serves');
kill 'TERM', $pid;
waitpid $pid, 0;
my $cached = do { open my $in, '<', $file or die $!; local $/; decode_json(<$in>) };
like($cached->{metadata_url}, qr{^http://127\.0\.0\.1:\d+/}, 'tied to the metadata URL');
is($cached->{tenant}, $EntraTest::TENANT, 'and the tenant');

# --- A restart with the IdP down serves with the cached keys from the first request on.
idp_admin('mode?set=down');
truncate "$prefix/logs/error.log", 0;
is(run_once()->{status}, 200, 'the IdP down from the start: the first request gets in');
like(log_text(), qr/\[notice\] .*entra: provider "live": serving with the \d+ cached keys until a fetch succeeds/,
    'the log says nginx serves with cached keys');
like(log_text(), qr/key fetch failed/, 'and that the fetch fails meanwhile');

# --- A cache file of another tenant, or too old, is not used.
sub rewrite_cache {
    my (%change) = @_;
    my %copy = (%$cached, %change);
    open my $out, '>', $file or die $!;
    print $out encode_json(\%copy);
}
rewrite_cache(tenant => $EntraTest::OTHER_TENANT);
truncate "$prefix/logs/error.log", 0;
is(run_once()->{status}, 503, "another tenant's cache file: 503 while the IdP is down");
like(log_text(), qr/\[warn\] .*entra: provider "live": key cache "[^"]+" is not used: it is for tenant "$EntraTest::OTHER_TENANT"/,
    'logged');
rewrite_cache(fetched_at => time - 73 * 3600);
truncate "$prefix/logs/error.log", 0;
is(run_once()->{status}, 503, 'a cache file older than max_age (72h): 503');
like(log_text(), qr/key cache "[^"]+" is not used: it was fetched \d+ s ago, more than max_age/, 'logged');

# --- What the master reads as root: never through a link, never waiting on a FIFO, at most 1 MiB,
# with URLs that pass the rules.
sub replace_cache_with {
    my ($make) = @_;
    unlink $file;
    $make->();
}
replace_cache_with(sub { symlink '/dev/zero', $file or die $! });
($code, $out) = nginx_t();
is($code, 0, 'a cache file that links to /dev/zero: nginx -t still passes');
like($out, qr/key cache "[^"]+" is not used: it is not a regular file/, 'and says it is not read');
replace_cache_with(sub { system('mkfifo', $file) == 0 or die "mkfifo failed\n" });
($code, $out) = nginx_t();
is($code, 0, 'a FIFO: nginx -t answers (it opened the FIFO without waiting for a writer)');
like($out, qr/key cache "[^"]+" is not used: it is not a regular file/, 'and says why');
replace_cache_with(sub { open my $out, '>', $file or die $!; print $out ' ' x (1024 * 1024 + 1) });
($code, $out) = nginx_t();
like($out, qr/key cache "[^"]+" is not used: it is larger than it may be \(1 MiB for keys\)/, 'a file over 1 MiB is not read');
unlink $file;
rewrite_cache(endpoints => ['http://evil.example/authorize', undef, undef]);
truncate "$prefix/logs/error.log", 0;
is(run_once()->{status}, 503, 'a cache file naming a plain-http endpoint off loopback is not used');
like(log_text(), qr/key cache "[^"]+" is not used: .*must be an https:\/\/ URL/, 'logged');

# --- Without a cache, a start while the IdP is down has no keys at all: the log says so (it keeps
# nothing), and tokens get 503.
write_nginx_conf($prefix, $port, live_provider());
truncate "$prefix/logs/error.log", 0;
is(run_once()->{status}, 503, 'no cache and the IdP down: 503');
like(log_text(), qr/key fetch failed, and there are no keys yet: tokens are refused with 503 until a fetch succeeds \(entra_keys_cache_path would let a restart start with the last keys\)/,
    'the log says there are no keys, rather than that it keeps them');
unlike(log_text(), qr/keeping the keys in force/, 'and never that it keeps keys it does not have');

# --- The default directory (the Debian package's /var/cache/nginx/entra; a debug build takes
# NGX_ENTRA_TEST_KEYS_CACHE): used when it exists and no entra_keys_cache_path is written.
my $default = File::Spec->rel2abs("$prefix/default-cache");
make_path($default);
chmod 0700, $default;
local $ENV{NGX_ENTRA_TEST_KEYS_CACHE} = $default;
idp_admin('mode?set=normal');
$pid = start_nginx($prefix, 'conf/nginx.conf', $port);
ok(eventually(sub { -s "$default/live.keys.json" }), 'the default directory, when it exists, keeps the keys');
kill 'TERM', $pid;
waitpid $pid, 0;
idp_admin('mode?set=down');
is(run_once()->{status}, 200, 'and a restart with the IdP down serves with them');
# `off` says no cache is wanted, not even the default one.
unlink "$default/live.keys.json";
write_nginx_conf($prefix, $port, "    entra_keys_cache_path off;\n" . live_provider());
idp_admin('mode?set=normal');
$pid = start_nginx($prefix, 'conf/nginx.conf', $port);
is(api()->{status}, 200, 'entra_keys_cache_path off: the keys are fetched');
kill 'TERM', $pid;
waitpid $pid, 0;
ok(!-e "$default/live.keys.json", 'and not kept in the default directory');
# A default directory others can write is not used, with a warning (nginx -t still passes).
write_nginx_conf($prefix, $port, live_provider());
chmod 0777, $default;
($code, $out) = nginx_t();
is($code, 0, 'a default directory others can write: nginx -t passes');
like($out, qr/\[warn\] .*the default keys cache "\Q$default\E" is not used: it is writable by group or others/, 'and warns');
chmod 0700, $default;

done_testing();
