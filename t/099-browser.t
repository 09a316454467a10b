# End to end in a real browser: headless Chromium, driven through WebDriver (chromedriver),
# opens the app, signs in on the development IdP's page, sees the protected page with the user's
# name, signs out (which goes through Entra's end-session page and its front-channel logout),
# and is asked to sign in again. Skipped where Debian's Chromium is not installed (Ubuntu ships it
# as a snap): scripts/test installs it on Debian.
use strict;
use warnings;

use File::Path qw(make_path remove_tree);
use HTTP::Tiny;
use IO::Socket::INET;
use JSON::PP qw(encode_json decode_json);
use Test::More;
use Time::HiRes qw(time sleep);
use EntraTest;
use EntraBrowser;

my ($chromium) = grep { -x } '/usr/bin/chromium', '/usr/lib/chromium/chromium';
my ($driver) = grep { -x } '/usr/bin/chromedriver';
plan skip_all => "no Debian Chromium and ChromeDriver here (packages chromium, chromium-driver)"
    unless $chromium && $driver;

my $port = ($ENV{TEST_NGINX_PORT} || 1984) + 100;
my $driver_port = $port + 1;
my $prefix = ($ENV{TEST_NGINX_SERVROOT} || 't/servroot') . '-browser';
my $origin = "http://127.0.0.1:$port";

signin_prefix($prefix);
my $provider = live_provider('client_secret_file secret;', 'session_key_file session.keys;',
    "post_logout_redirect $origin/signed-out;");
write_nginx_conf($prefix, $port, $provider, server => <<"LOCATIONS");
        location / {
            entra_auth live session;
            proxy_set_header X-Name \$entra_name;
            proxy_pass http://127.0.0.1:$port/_app/;
        }
        location /_app/ {
            default_type text/html;
            return 200 '<!doctype html><title>App</title><h1>Hello, \$http_x_name</h1><form method="post" action="/logout"><button id="signout" type="submit">Sign out</button></form>';
        }
        location /admin/ {
            entra_auth live session;
            entra_require_auth_context c1;
            proxy_set_header X-Name "\$entra_name with \$entra_auth_contexts";
            proxy_pass http://127.0.0.1:$port/_app/;
        }
        location = /logout { entra_auth live session; entra_logout; }
        location = /signed-out { default_type text/html; return 200 '<!doctype html><h1>You are signed out</h1>'; }
LOCATIONS
run_nginx($prefix, $port);

# chromedriver, on loopback only.
my $driver_pid = fork // die "fork: $!";
if (!$driver_pid) {
    open STDOUT, '>', "$prefix/logs/chromedriver.log" or die;
    open STDERR, '>&', \*STDOUT or die;
    exec $driver, "--port=$driver_port", '--allowed-ips=127.0.0.1' or die;
}
END { kill 'TERM', $driver_pid if $driver_pid }
my $wd = HTTP::Tiny->new(timeout => 60);
my $deadline = time + 20;
until (IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $driver_port, Proto => 'tcp')) {
    die "chromedriver did not start\n" if time > $deadline;
    sleep 0.05;
}

sub webdriver {
    my ($method, $path, $body) = @_;
    my $res = $wd->request($method, "http://127.0.0.1:$driver_port$path",
        { headers => { 'Content-Type' => 'application/json' }, content => encode_json($body // {}) });
    my $answer = eval { decode_json($res->{content}) } // {};
    die "WebDriver $method $path: $res->{status} $res->{content}\n" unless $res->{success};
    return $answer->{value};
}

my @args = ('--headless=new', '--disable-gpu', '--no-first-run', "--user-data-dir=$prefix/profile");
push @args, '--no-sandbox' if $> == 0;
my $session = webdriver('POST', '/session', {
    capabilities => { alwaysMatch => { browserName => 'chrome',
        'goog:chromeOptions' => { binary => $chromium, args => \@args } } },
})->{sessionId};
END { webdriver('DELETE', "/session/$session") if $session }

sub go { webdriver('POST', "/session/$session/url", { url => $_[0] }) }
sub text { webdriver('POST', "/session/$session/execute/sync", { script => 'return document.body.innerText', args => [] }) }
sub url { webdriver('GET', "/session/$session/url") }
sub click {
    my ($using, $value) = @_;
    my $element = webdriver('POST', "/session/$session/element", { using => $using, value => $value });
    my ($id) = values %$element;
    webdriver('POST', "/session/$session/element/$id/click");
}
# Polls the page until its text matches (bounded): a browser follows redirects at its own pace.
sub page_shows {
    my ($pattern, $what) = @_;
    my $until = time + 20;
    my $text = '';
    while (time < $until) {
        $text = eval { text() } // '';
        last if $text =~ $pattern;
        sleep 0.1;
    }
    like($text, $pattern, $what);
}

go("$origin/");
page_shows(qr/Sign in to the development IdP/, 'the browser is sent to the IdP\'s sign-in page');
like(url(), qr{^\Q$ENV{TEST_NGINX_IDP_URL}\E/$TENANT/oauth2/v2\.0/authorize\?}, 'at the authorize endpoint');
click('partial link text', 'Alice Example');
page_shows(qr/Hello, Alice Example/, 'after signing in, the protected page greets the user by name');
is(url(), "$origin/", 'back at the URL first asked for');
like(log_text(), qr/signed in: provider "live", oid \S+, tid \S+, sid \S+, 2 groups/, 'nginx logged the sign-in');

# A page that needs the authentication context c1: the browser steps up, the IdP's second click
# standing for MFA, and comes back to it.
go("$origin/admin/");
page_shows(qr/Verify your identity/, 'a page with an authentication context steps up at the IdP');
click('css selector', '#verify');
page_shows(qr/Hello, Alice Example with c1/, 'and comes back with the context');
is(url(), "$origin/admin/", 'to the page asked for');

click('css selector', '#signout');
page_shows(qr/You are signed out/, 'signing out lands on the signed-out page');
like(log_text(), qr/signed out: provider "live"/, 'nginx logged the logout');
like(log_text(), qr/front-channel logout: provider "live", sid/, 'and the IdP\'s front-channel call');

go("$origin/");
page_shows(qr/Sign in to the development IdP/, 'the app asks to sign in again');

unlike(log_text(), qr/\[(alert|crit|emerg)\]/, 'no alert, crit or emerg line in the error log');


done_testing();
