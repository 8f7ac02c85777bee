# ngx_http_insite_gateway_module: insite_gateway_jwt_leeway at its edges.
# With a leeway of 30 s a token whose exp is 29 s past passes and one 30 or
# 31 s past is refused ("expired"); one whose nbf is 29 or 30 s ahead passes
# and one 31 s ahead is refused (not_yet_valid).  A token the cache holds is
# refused once it expires too.
#
# nginx compares whole seconds (ngx_time()): each check builds its token
# from the current second T and is repeated when the answer came in a later
# second, so "exp = T - 29" means exactly 29 s at nginx.  No timing
# assertion: the only wait is for the clock to reach the next second.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Digest::SHA qw(hmac_sha256);
use IO::Socket::INET ();
use MIME::Base64 qw(encode_base64url);
use Time::HiRes qw(time sleep);
use Insite::Nginx;

plan skip_all => 'TEST_NGINX_LOAD_MODULES not set (run under scripts/test.sh)'
    unless $ENV{TEST_NGINX_LOAD_MODULES};

my $ngx = Insite::Nginx->new(server => <<'CONF', log_level => 'info');
        location /api {
            insite_gateway_jwt on;
            insite_gateway_jwt_secret "test-secret";
            insite_gateway_jwt_leeway 30s;
            proxy_set_header X-User-Id $insite_user_id;
            proxy_pass http://127.0.0.1:$server_port/backend;
        }
        location /backend { return 200 "user=$http_x_user_id\n"; }
CONF

sub jwt {
    my ($claims) = @_;
    my $input = encode_base64url('{"alg":"HS256","typ":"JWT"}') . '.' . encode_base64url($claims);
    return "$input." . encode_base64url(hmac_sha256($input, 'test-secret'));
}

# status and body for a token made from the current second; retried when
# the second changed while the request was under way
my $n = 0;
sub at_second {
    my ($claim, $offset) = @_;
    for (1 .. 8) {
        my $t = int time;
        my $sub = 'u' . ++$n;
        my $res = $ngx->get('/api', headers => {
            Authorization => 'Bearer ' . jwt(sprintf '{"sub":"%s","%s":%d}', $sub, $claim, $t + $offset) });
        return ($res->{status}, $res->{body} // '', $sub) if int(time) == $t;
    }
    die "no request completed within one second in 8 tries\n";
}

for my $c ([exp => -29, 200], [exp => -30, 401], [exp => -31, 401], [exp => -3600, 401],
           [nbf => 29, 200], [nbf => 30, 200], [nbf => 31, 401], [nbf => 3600, 401])
{
    my ($claim, $off, $want) = @$c;
    my ($st, $body, $sub) = at_second($claim, $off);
    is($st, $want, sprintf '%s = now %+d s, leeway 30 s: %d', $claim, $off, $want);
    if ($want == 200) {
        is($body, "user=$sub\n", "... the subject reaches the upstream");
    } elsif ($claim eq 'exp') {
        like($body, qr/"error":"invalid_token".*the token has expired/, '... JSON: the token has expired');
    } else {
        like($body, qr/"error":"invalid_token"/, '... JSON: invalid_token');
    }
}
like($ngx->error_log, qr/invalid token \(not_yet_valid\)/, 'nbf refusals are logged as not_yet_valid');

# the cache: one keep-alive connection (one worker) asks with a token that is
# valid for the current second only (exp = T - 29), then in the next second
{
    my $ok;
    for (1 .. 5) {
        my $t = int time;
        my $tok = jwt(sprintf '{"sub":"cached","exp":%d}', $t - 29);
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ngx->port, Timeout => 5)
            or die "connect: $!";
        my $req = sub {
            my ($close) = @_;
            print $s "GET /api HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer $tok\r\n"
                   . ($close ? "Connection: close\r\n" : '') . "\r\n";
            my $head = '';
            while ($head !~ /\r\n\r\n/) { sysread($s, $head, 1, length $head) or return undef }
            my ($len) = $head =~ /^Content-Length:\s*(\d+)/mi;
            my $body = '';
            sysread($s, $body, $len - length $body, length $body) while length $body < ($len // 0);
            my ($st) = $head =~ m{^HTTP/1\.1 (\d+)};
            return $st;
        };
        my $first = $req->(0);
        next unless int(time) == $t && ($first // 0) == 200;
        sleep 0.02 while int(time) == $t;
        my $second = $req->(1);
        close $s;
        is($second, 401, 'a token valid when cached is refused once it expired (same worker, cache hit)');
        $ok = 1;
        last;
    }
    ok($ok, 'the cache check ran');
}

$ngx->check_log;
done_testing();
