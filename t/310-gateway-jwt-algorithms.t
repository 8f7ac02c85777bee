# Tokens as identity providers sign them: RS256/RS384/RS512, PS256, ES256,
# ES384 and EdDSA against a JWKS file, keys made by openssl here.  The
# algorithm comes from the key: every confusion attempt is a 401, and so is
# an expired token under every algorithm.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Insite::Nginx;
use Insite::JWT;
use File::Temp ();

my $dir = File::Temp::tempdir(CLEANUP => 1);
my $rsa   = Insite::JWT::key('rsa', $dir, 'rsa-1');
my $ec256 = Insite::JWT::key('ec256', $dir, 'ec-1');
my $ec384 = Insite::JWT::key('ec384', $dir, 'ec-2');
my $ed    = Insite::JWT::key('ed25519', $dir, 'ed-1');
my $rs512 = Insite::JWT::key('rsa', $dir, 'rsa-512');   # "alg":"RS512" only
mkdir "$dir/other";
my $other = Insite::JWT::key('rsa', "$dir/other", 'rsa-1');   # same kid, not in the set

open my $fh, '>', "$dir/jwks.json" or die;
print $fh Insite::JWT::jwks($rsa, $ec256, $ec384, $ed,
                            [$rs512, { alg => 'RS512' }]);
close $fh;

# a set of one key: a token without kid may use it
open $fh, '>', "$dir/one.json" or die;
print $fh Insite::JWT::jwks($ec256);
close $fh;

my $ngx = Insite::Nginx->new(server => <<"CONF");
        location /api {
            insite_gateway_jwt on;
            insite_gateway_jwt_jwks $dir/jwks.json;
            proxy_set_header X-User-Id \$insite_user_id;
            proxy_pass http://127.0.0.1:\$server_port/backend;
        }
        location /mixed {
            insite_gateway_jwt on;
            insite_gateway_jwt_secret "hs-secret";
            insite_gateway_jwt_jwks $dir/jwks.json;
            proxy_set_header X-User-Id \$insite_user_id;
            proxy_pass http://127.0.0.1:\$server_port/backend;
        }
        location /one {
            insite_gateway_jwt on;
            insite_gateway_jwt_jwks $dir/one.json;
            proxy_set_header X-User-Id \$insite_user_id;
            proxy_pass http://127.0.0.1:\$server_port/backend;
        }
        location /backend { return 200 "user=\$http_x_user_id\\n"; }
CONF

sub get {
    my ($path, $token) = @_;
    return $ngx->get($path, headers => { Authorization => "Bearer $token" });
}

sub accepted {
    my ($path, $token, $user, $name) = @_;
    my $r = get($path, $token);
    is("$r->{status} " . ($r->{body} // ''), "200 user=$user\n", $name);
}

sub refused {
    my ($path, $token, $name) = @_;
    my $r = get($path, $token);
    is($r->{status}, 401, $name);
    like($r->{body} // '', qr/^\{"error":"invalid_token"/, "$name: JSON reason");
}

my $exp = time + 600;
my %c = (sub => 'alice', exp => $exp);

# every algorithm, with the key that allows it
accepted('/api', Insite::JWT::sign($rsa, 'RS256', \%c), 'alice', 'RS256');
accepted('/api', Insite::JWT::sign($rsa, 'RS384', \%c), 'alice', 'RS384');
accepted('/api', Insite::JWT::sign($rsa, 'RS512', \%c), 'alice', 'RS512');
accepted('/api', Insite::JWT::sign($rsa, 'PS256', \%c), 'alice', 'PS256');
accepted('/api', Insite::JWT::sign($ec256, 'ES256', \%c), 'alice', 'ES256');
accepted('/api', Insite::JWT::sign($ec384, 'ES384', \%c), 'alice', 'ES384');
accepted('/api', Insite::JWT::sign($ed, 'EdDSA', \%c), 'alice', 'EdDSA');
accepted('/api', Insite::JWT::sign($rs512, 'RS512', \%c), 'alice',
         'RS512 with a key whose "alg" is RS512');

# the key's "alg" narrows it: RS256 with the RS512-only key
refused('/api', Insite::JWT::sign($rs512, 'RS256', \%c),
        'RS256 under a key published for RS512 only');

# expired, under every algorithm (the signature is good)
my %old = (sub => 'alice', exp => time - 60);
for my $case ([$rsa, 'RS256'], [$rsa, 'PS256'], [$ec256, 'ES256'],
              [$ec384, 'ES384'], [$ed, 'EdDSA'])
{
    my $r = get('/api', Insite::JWT::sign($case->[0], $case->[1], \%old));
    is($r->{status}, 401, "$case->[1]: expired");
    like($r->{body}, qr/"message":"the token has expired"/,
         "$case->[1]: expired, said so");
}

# algorithm confusion
refused('/api', Insite::JWT::hs256($rsa->{public_pem}, \%c, { kid => 'rsa-1' }),
        'the RSA public key (PEM) as HS256 secret');
refused('/api', Insite::JWT::hs256($rsa->{public_pem}, \%c),
        'the RSA public key as HS256 secret, no kid');
refused('/mixed', Insite::JWT::hs256($rsa->{public_pem}, \%c, { kid => 'rsa-1' }),
        'the RSA public key as HS256 secret where HS256 is allowed');
accepted('/mixed', Insite::JWT::hs256('hs-secret', \%c), 'alice',
         'HS256 with the real secret where both are configured');
refused('/api', Insite::JWT::hs256('hs-secret', \%c),
        'HS256 where no secret is configured');
refused('/api', Insite::JWT::unsigned(\%c, { kid => 'rsa-1' }), 'alg none');
refused('/api', Insite::JWT::unsigned(\%c, { kid => 'rsa-1', alg => 'None' }),
        'alg None');
refused('/api', Insite::JWT::sign($rsa, 'RS256', \%c, { alg => 'ES256' }),
        'header ES256 on an RSA key');
refused('/api', Insite::JWT::sign($ec256, 'ES256', \%c, { alg => 'RS256' }),
        'header RS256 on an EC key');
refused('/api', Insite::JWT::sign($ec256, 'ES256', \%c, { alg => 'ES384' }),
        'header ES384 on a P-256 key');
refused('/api', Insite::JWT::sign($ed, 'EdDSA', \%c, { alg => 'ES256' }),
        'header ES256 on an Ed25519 key');
refused('/api', Insite::JWT::sign($ec256, 'ES256', \%c, { kid => 'rsa-1' }),
        'an EC signature naming the RSA key\'s kid (alg ES256)');
refused('/api', Insite::JWT::sign($ec256, 'ES256', \%c, { kid => 'rsa-1', alg => 'RS256' }),
        'an EC signature naming the RSA key\'s kid, header RS256');
refused('/api', Insite::JWT::sign($other, 'RS256', \%c),
        'another RSA key with a known kid: bad signature');
refused('/api', Insite::JWT::sign($rsa, 'RS256', \%c, { kid => 'nope' }),
        'unknown kid');
refused('/api', Insite::JWT::sign($rsa, 'RS512', \%c, { kid => undef }),
        'no kid and two keys allow RS512: ambiguous');

refused('/api', Insite::JWT::sign($rsa, 'RS256', \%c, { crit => ['exp'], exp => 1 }),
        'a critical header extension we do not understand');
refused('/api', Insite::JWT::sign($other, 'RS256', \%c,
            { jwk => $other->{jwk}, jku => 'http://127.0.0.1:1/jwks' }),
        'a key carried in the token (jwk, jku) is never used');

# no kid with exactly one key for the alg
accepted('/one', Insite::JWT::sign($ec256, 'ES256', \%c, { kid => undef }),
         'alice', 'no kid, one key in the set');
refused('/one', Insite::JWT::sign($ec256, 'ES256', \%c, { alg => 'EdDSA', kid => undef }),
        'no kid, no key for the header alg');

# a tampered payload under a good header and signature
my $t = Insite::JWT::sign($ed, 'EdDSA', \%c);
my @p = split /\./, $t;
my $mallory = Insite::JWT::sign($ed, 'EdDSA', { sub => 'mallory', exp => $exp });
refused('/api', join('.', $p[0], (split /\./, $mallory)[1], $p[2]),
        'EdDSA: claims swapped under another signature');

like($ngx->error_log, qr/invalid token \(algorithm\)/, 'the log names the reason');

$ngx->stop;
$ngx->check_log;
done_testing;
