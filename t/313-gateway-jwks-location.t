# insite_gateway_jwt_jwks_location: the IdP's JWKS fetched by subrequest
# (here the IdP is a location of the same nginx serving a file).  With no
# key set a token is refused with 503, never accepted; an unknown kid makes
# a refetch, at most once per interval; a rotation at the IdP is picked up
# and removes the retired key (cached tokens too); a failing IdP keeps the
# last good set.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Insite::Nginx;
use Insite::JWT;
use File::Temp ();
use Time::HiRes ();
use IO::Socket::INET ();

my $dir = File::Temp::tempdir(CLEANUP => 1);
mkdir "$dir/idp";
my $a = Insite::JWT::key('rsa', $dir, 'key-a');
my $b = Insite::JWT::key('ec256', $dir, 'key-b');

sub put {
    my ($name, $text) = @_;
    open my $fh, '>', "$dir/$name.tmp" or die;
    print $fh $text;
    close $fh;
    rename "$dir/$name.tmp", "$dir/$name" or die;
}

put('idp/jwks.json', Insite::JWT::jwks($a));
put('fail', '');                 # the IdP answers 500 to begin with

# Key sets are per worker (each fetches on its own): one worker makes what
# this test sees independent of which worker a connection lands on.
my $ngx = Insite::Nginx->new(workers => 1, server => <<"CONF");
        location = /internal/jwks {
            internal;
            proxy_pass http://127.0.0.1:\$server_port/idp/jwks.json;
            subrequest_output_buffer_size 64k;
        }
        location /idp/ {
            if (-f $dir/fail) { return 500; }
            alias $dir/idp/;
            add_header Cache-Control "public, max-age=1";
        }
        location /api {
            insite_gateway_jwt on;
            insite_gateway_jwt_jwks_location /internal/jwks min_age=1s max_age=2s interval=1s;
            proxy_set_header X-User-Id \$insite_user_id;
            proxy_pass http://127.0.0.1:\$server_port/backend;
        }
        location = /internal/jwks2 {
            internal;
            proxy_pass http://127.0.0.1:\$server_port/idp2/jwks.json;
            subrequest_output_buffer_size 64k;
        }
        location /idp2/ {
            alias $dir/idp/;
            add_header Cache-Control "max-age=3600";
        }
        location /cold {
            insite_gateway_jwt on;
            insite_gateway_jwt_jwks_location /internal/jwks2 interval=1s;
            proxy_set_header X-User-Id \$insite_user_id;
            proxy_pass http://127.0.0.1:\$server_port/backend;
        }
        location /backend { return 200 "user=\$http_x_user_id\\n"; }
CONF

sub get {
    my ($token) = @_;
    return $ngx->get('/api', headers => { Authorization => "Bearer $token" });
}

sub eventually {
    my ($token, $want) = @_;
    my $deadline = time + 20;
    my $ok = 0;
    while (time < $deadline) {
        $ok = get($token)->{status} == $want ? $ok + 1 : 0;
        return 1 if $ok >= 6;
        Time::HiRes::sleep(0.1);
    }
    return 0;
}

sub idp_fetches {
    my $log = Test::Nginx::Util::slurp($ngx->dir . '/logs/access.log');
    my @n = $log =~ m{"GET /idp/jwks\.json }g;
    return scalar @n;
}

my $exp = time + 600;
my $ta = Insite::JWT::sign($a, 'RS256', { sub => 'alice', exp => $exp });
my $tb = Insite::JWT::sign($b, 'ES256', { sub => 'bob', exp => $exp });

# no key set could ever be fetched: 503, not accepted
for (1 .. 4) {
    my $r = get($ta);
    is($r->{status}, 503, 'no key set: 503');
    like($r->{body}, qr/^\{"error":"service_unavailable","message":"the identity provider's keys are unavailable"/,
         '... with the gateway\'s JSON');
}
like($ngx->error_log, qr/JWKS from "\/internal\/jwks" refused: status 500; no key set/,
     'the failed fetch is logged');

# the IdP recovers: the request that fetches waits for the keys
unlink "$dir/fail";
ok(eventually($ta, 200), 'the keys are fetched, the token accepted');
is(get($ta)->{body}, "user=alice\n", 'the user reaches the upstream');
is(get($tb)->{status}, 401, 'a key the IdP does not publish: 401');
my $forged = Insite::JWT::sign($b, 'ES256', { sub => 'alice', exp => $exp },
                               { kid => 'key-a' });
is(get($forged)->{status}, 401, 'an EC signature under the RSA key\'s kid: 401');
is(get(Insite::JWT::hs256($a->{public_pem}, { sub => 'x' }, { kid => 'key-a' }))->{status},
   401, 'the RSA public key as HS256 secret: 401');

# unknown kids do not make a fetch per request
my $before = idp_fetches();
my $t0 = time;
my $unknown = Insite::JWT::sign($a, 'RS256', { sub => 'x', exp => $exp },
                                { kid => 'nope' });
is(get($unknown)->{status}, 401, 'unknown kid: 401') for 1 .. 20;
my $fetches = idp_fetches() - $before;
my $bound = time - $t0 + 2;   # one per interval, and a refresh
ok($fetches <= $bound, "20 unknown kids made $fetches fetches (at most $bound)");

# rotation at the IdP: b is new, a retired
put('idp/jwks.json', Insite::JWT::jwks($b));
ok(eventually($tb, 200), 'a new kid is fetched and accepted');
ok(eventually($ta, 401), 'the retired key\'s (cached) token is refused');

# the IdP fails again: the last good set stays in use
put('fail', '');
Time::HiRes::sleep(2.5);                # past max_age: refreshes fail
is(get($tb)->{status}, 200, 'IdP down: the last good set is used') for 1 .. 6;
like($ngx->error_log, qr/refused: status 500; keeping the last good key set/,
     'the failed refresh is logged');

# a cold key set and 20 requests at once: one fetch, every request waits
# for it (none is refused while the fetch is out)
my @socks;
for (1 .. 20) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ngx->port)
        or die "connect: $!";
    push @socks, $s;
}
$_->syswrite("GET /cold HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $tb\r\n"
             . "Connection: close\r\n\r\n") for @socks;
my @status;
for my $s (@socks) {
    local $/;
    $s->timeout(10);
    my $resp = <$s> // '';
    push @status, $resp =~ m{^HTTP/1\.1 (\d+)} ? $1 : 'none';
}
is(join(' ', @status), join(' ', ('200') x 20), '20 concurrent requests on a cold set: all 200');
my @cold = Test::Nginx::Util::slurp($ngx->dir . '/logs/access.log') =~ m{"GET /idp2/jwks\.json }g;
is(scalar @cold, 1, 'one fetch for all of them');

$ngx->stop;
$ngx->check_log;
done_testing;
