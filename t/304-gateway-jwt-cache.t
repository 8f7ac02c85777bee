# The per-worker cache of verified tokens must not outlive a token's exp,
# must not serve a token before its nbf, and must not carry a verification
# over to a location with another secret.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Digest::SHA qw(hmac_sha256);
use MIME::Base64 qw(encode_base64url);
use Insite::Nginx;

sub jwt {
    my ($claims, $key) = @_;
    my $input = encode_base64url('{"alg":"HS256","typ":"JWT"}') . '.'
              . encode_base64url($claims);
    return "$input." . encode_base64url(hmac_sha256($input, $key // 'secret-a'));
}

my $ngx = Insite::Nginx->new(server => <<'CONF');
        location /a {
            insite_gateway_jwt on;
            insite_gateway_jwt_secret "secret-a";
            proxy_set_header X-User-Id $insite_user_id;
            proxy_pass http://127.0.0.1:$server_port/backend;
        }
        location /b {
            insite_gateway_jwt on;
            insite_gateway_jwt_secret "secret-b";
            proxy_set_header X-User-Id $insite_user_id;
            proxy_pass http://127.0.0.1:$server_port/backend;
        }
        location /backend { return 200 "user=$http_x_user_id\n"; }
CONF

sub get {
    my ($path, $token) = @_;
    return $ngx->get($path, headers => { Authorization => "Bearer $token" });
}

# both workers see the token while it is valid, so both have it cached
my $exp = time + 2;
my $t = jwt(qq({"sub":"alice","exp":$exp}));
for (1 .. 10) {
    my $r = get('/a', $t);
    is($r->{status}, 200, 'valid token accepted') or last;
}
is(get('/a', $t)->{body}, "user=alice\n", 'the user reaches the upstream');

sleep 1 while time <= $exp;
for (1 .. 6) {
    my $r = get('/a', $t);
    is($r->{status}, 401, 'once exp has passed the cached token is refused');
    like($r->{body}, qr/"error":"invalid_token"/, '... as an invalid token');
}

# a token cached under /a is not valid under /b (another secret)
my $t2 = jwt(q({"sub":"bob"}));
is(get('/a', $t2)->{status}, 200, 'bob under /a');
is(get('/b', $t2)->{status}, 401, 'the same token under /b, signed for /a: refused');
is(get('/b', jwt(q({"sub":"bob"}), 'secret-b'))->{status}, 200,
   'a token signed for /b passes /b');

# nbf in the future: refused every time, however often it is presented
my $nbf = time + 30;
my $t3 = jwt(qq({"sub":"carol","nbf":$nbf}));
is(get('/a', $t3)->{status}, 401, 'not yet valid') for 1 .. 4;

$ngx->stop;
$ngx->check_log;
done_testing;
