# insite_gateway_jwt_jwks <file>: a rotation needs no reload (the file is
# re-read when it changes), a token verified under a key the rotation
# removed is refused even though the worker cached it, a broken file at run
# time keeps the last good set (logged once), and at configuration time it
# is an nginx -t error.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Insite::Nginx;
use Insite::JWT;
use File::Temp ();
use Time::HiRes ();

my $dir = File::Temp::tempdir(CLEANUP => 1);
my $a = Insite::JWT::key('rsa', $dir, 'key-a');
my $b = Insite::JWT::key('ec256', $dir, 'key-b');
my $c = Insite::JWT::key('ed25519', $dir, 'key-c');

sub put {
    my ($name, $text) = @_;
    open my $fh, '>', "$dir/$name.tmp" or die;
    print $fh $text;
    close $fh;
    rename "$dir/$name.tmp", "$dir/$name" or die;   # as deploy tools do
}

put('jwks.json', Insite::JWT::jwks($a, $b));

my $ngx = Insite::Nginx->new(server => <<"CONF");
        location /api {
            insite_gateway_jwt on;
            insite_gateway_jwt_jwks $dir/jwks.json;
            proxy_set_header X-User-Id \$insite_user_id;
            proxy_pass http://127.0.0.1:\$server_port/backend;
        }
        location /backend { return 200 "user=\$http_x_user_id\\n"; }
CONF

sub status {
    my ($token) = @_;
    return $ngx->get('/api', headers => { Authorization => "Bearer $token" })
               ->{status};
}

# until the status is what we want (both workers), bounded generously
sub eventually {
    my ($token, $want) = @_;
    my $deadline = time + 15;
    my $ok = 0;
    while (time < $deadline) {
        $ok = status($token) == $want ? $ok + 1 : 0;
        return 1 if $ok >= 6;
        Time::HiRes::sleep(0.1);
    }
    return 0;
}

my $exp = time + 600;
my $ta = Insite::JWT::sign($a, 'RS256', { sub => 'alice', exp => $exp });
my $tb = Insite::JWT::sign($b, 'ES256', { sub => 'bob', exp => $exp });
my $tc = Insite::JWT::sign($c, 'EdDSA', { sub => 'carol', exp => $exp });

# both workers verify and cache a and b
is(status($ta), 200, 'key a') for 1 .. 6;
is(status($tb), 200, 'key b') for 1 .. 6;
is(status($tc), 401, 'key c is not published yet');

# rotation: a is retired, c is new
put('jwks.json', Insite::JWT::jwks($b, $c));
ok(eventually($tc, 200), 'the new key is used without a reload');
Time::HiRes::sleep(1.1);   # every worker has looked at the file since
is(status($ta), 401, 'a cached token of the removed key is refused')
    for 1 .. 6;
is(status($tb), 200, 'a token of a key that stayed still passes') for 1 .. 4;

# a broken file: the last good set stays, one error per worker
put('jwks.json', '{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}');
Time::HiRes::sleep(1.2);
for (1 .. 3) {
    is(status($tc), 200, 'a broken file keeps the last good set');
    is(status($tb), 200, '... for every key in it');
    Time::HiRes::sleep(0.5);
}
my @refused = $ngx->error_log =~ /JWKS file "[^"]+" refused: key #1: an RSA modulus under 2048 bits/g;
ok(@refused >= 1 && @refused <= 2,
   'the broken file is logged once per worker (' . scalar(@refused) . ')');

# a good file again: back to it
put('jwks.json', Insite::JWT::jwks($a));
ok(eventually($ta, 200), 'a fixed file is read');
ok(eventually($tc, 401), 'and its keys are the only ones');

$ngx->stop;
$ngx->check_log;

# nginx -t refuses a bad file, naming it and the reason
put('bad.json', '{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}');
my $conf = "$dir/t.conf";
open my $fh, '>', $conf or die;
for my $so (split ' ', $ENV{TEST_NGINX_LOAD_MODULES} // '') {
    print $fh "load_module $so;\n";
}
print $fh "error_log $dir/t.log;\npid $dir/t.pid;\nevents {}\n"
        . "http { server { listen 127.0.0.1:1; location / {\n"
        . "  insite_gateway_jwt on; insite_gateway_jwt_jwks $dir/bad.json; } } }\n";
close $fh;
my $bin = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
my $out = `$bin -t -p $dir/ -c $conf 2>&1`;
isnt($?, 0, 'nginx -t fails on a bad JWKS file');
like($out, qr/insite_gateway_jwt_jwks "[^"]*bad\.json": key #1: a symmetric/,
     'naming the file and the reason');
$out = `$bin -t -p $dir/ -c $conf 2>&1` if unlink "$dir/bad.json";
like($out, qr/bad\.json": cannot open/, 'a missing file too');

done_testing;
