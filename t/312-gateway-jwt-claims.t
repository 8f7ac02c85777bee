# $insite_jwt_claim_<name> and insite_gateway_jwt_require: what the worker
# APIs rely on (X-User-Scopes from the scope claim, operator actions behind
# a required scope).
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Insite::Nginx;
use Insite::JWT;
use File::Temp ();

my $dir = File::Temp::tempdir(CLEANUP => 1);
my $ec = Insite::JWT::key('ec256', $dir, 'ec-1');
open my $fh, '>', "$dir/jwks.json" or die;
print $fh Insite::JWT::jwks($ec);
close $fh;

my $ngx = Insite::Nginx->new(server => <<"CONF");
        insite_gateway_jwt_secret "s3cret";
        insite_gateway_jwt_jwks $dir/jwks.json;

        location /claims {
            insite_gateway_jwt on;
            proxy_set_header X-User-Scopes \$insite_jwt_claim_scope;
            proxy_set_header X-Roles \$insite_jwt_claim_roles;
            proxy_set_header X-N \$insite_jwt_claim_level;
            proxy_set_header X-Email \$insite_jwt_claim_email;
            proxy_pass http://127.0.0.1:\$server_port/backend;
        }
        location /admin {
            insite_gateway_jwt on;
            insite_gateway_jwt_require scope gdpr:admin;
            proxy_pass http://127.0.0.1:\$server_port/backend;
        }
        location /ops {
            insite_gateway_jwt on;
            insite_gateway_jwt_require roles operator auditor;
            insite_gateway_jwt_require scope ops:write;
            proxy_pass http://127.0.0.1:\$server_port/backend;
        }
        location /realm {
            insite_gateway_jwt on;
            insite_gateway_jwt_require realm_access.roles operator;
            proxy_pass http://127.0.0.1:\$server_port/backend;
        }
        location /opt {
            insite_gateway_jwt optional;
            insite_gateway_jwt_require scope read;
            proxy_pass http://127.0.0.1:\$server_port/backend;
        }
        location /backend {
            return 200 "scopes=[\$http_x_user_scopes] roles=[\$http_x_roles] n=[\$http_x_n] email=[\$http_x_email]\\n";
        }
CONF

sub get {
    my ($path, $token, %h) = @_;
    $h{Authorization} = "Bearer $token" if defined $token;
    return $ngx->get($path, headers => \%h);
}

my $exp = time + 600;
my %claims = (sub => 'alice', exp => $exp, scope => 'read gdpr:admin',
              roles => ['operator', 'viewer'], level => 3,
              email => 'a@example.com');
my $t = Insite::JWT::sign($ec, 'ES256', \%claims);

for (1 .. 4) {   # the first verifies, the others are cache hits
    is(get('/claims', $t)->{body},
       "scopes=[read gdpr:admin] roles=[operator viewer] n=[3] email=[a\@example.com]\n",
       'claims as variables: string, array joined, number');
}

# a client's own X-User-Scopes never reaches the upstream
my $plain = Insite::JWT::hs256('s3cret', { sub => 'bob', exp => $exp });
is(get('/claims', $plain, 'X-User-Scopes' => 'gdpr:admin')->{body},
   "scopes=[] roles=[] n=[] email=[]\n", 'no claims: empty, the client header replaced');

# a claim with CR LF would inject a header: it has no value
my $evil = Insite::JWT::hs256('s3cret', { sub => 'eve', exp => $exp,
                                          scope => "read\r\nX-Admin: 1" });
is(get('/claims', $evil)->{body}, "scopes=[] roles=[] n=[] email=[]\n",
   'a claim with control characters is not a variable');

# require
my $r = get('/admin', $t);
is($r->{status}, 200, 'scope gdpr:admin among space-separated scopes');

for my $case (['no scope', { sub => 'bob', exp => $exp }],
              ['other scopes', { sub => 'bob', exp => $exp, scope => 'read write' }],
              ['a prefix of the scope', { sub => 'bob', exp => $exp, scope => 'gdpr:admin2 gdpr' }],
              ['the value in another claim', { sub => 'bob', exp => $exp, roles => ['gdpr:admin'] }])
{
    $r = get('/admin', Insite::JWT::hs256('s3cret', $case->[1]));
    is($r->{status}, 403, "$case->[0]: 403");
    like($r->{body}, qr/^\{"error":"insufficient_scope","message":"the token's \\"scope\\" claim lacks a required value"/,
         "$case->[0]: JSON reason");
    is($r->{headers}{'www-authenticate'}, 'Bearer error="insufficient_scope"',
       "$case->[0]: WWW-Authenticate");
}

is(get('/admin', Insite::JWT::hs256('s3cret', { sub => 'bob', exp => $exp,
                                                scope => ['x', 'gdpr:admin'] }))->{status},
   200, 'scope as an array');
is(get('/admin', Insite::JWT::hs256('s3cret', { sub => 'bob', exp => time - 5,
                                                scope => 'gdpr:admin' }))->{status},
   401, 'expired with the scope: 401 first');

# every require line must hold; any value of a line is enough
my %ops = (sub => 'op', exp => $exp, scope => 'ops:write');
is(get('/ops', Insite::JWT::hs256('s3cret', { %ops, roles => ['auditor'] }))->{status},
   200, 'second value of the first line, and the second line');
is(get('/ops', Insite::JWT::hs256('s3cret', { %ops, roles => 'operator' }))->{status},
   200, 'a role as a string');
is(get('/ops', Insite::JWT::hs256('s3cret', { %ops, roles => 'operator auditor' }))->{status},
   403, 'roles is not a word list: the whole string is compared');
is(get('/ops', Insite::JWT::hs256('s3cret', { %ops, roles => [] }))->{status},
   403, 'first line fails');
is(get('/ops', Insite::JWT::hs256('s3cret', { sub => 'op', exp => $exp,
                                              roles => ['operator'] }))->{status},
   403, 'second line fails');

# Keycloak nests realm roles: a dotted claim name is a path
is(get('/realm', Insite::JWT::hs256('s3cret', { sub => 'k', exp => $exp,
        realm_access => { roles => ['viewer', 'operator'] } }))->{status},
   200, 'realm_access.roles holds operator');
is(get('/realm', Insite::JWT::hs256('s3cret', { sub => 'k', exp => $exp,
        realm_access => { roles => ['viewer'] } }))->{status},
   403, 'realm_access.roles without operator');

# optional authentication with a requirement: a token is needed
$r = get('/opt', undef);
is($r->{status}, 401, 'optional + require, no token: 401');
is(get('/opt', Insite::JWT::hs256('s3cret', { sub => 'x', scope => 'read' }))->{status},
   200, 'optional + require with the scope');

like($ngx->error_log, qr/token of "bob" lacks claim "scope"/, 'a refusal is logged');

$ngx->stop;
$ngx->check_log;

# require without authentication is a configuration error
my $conf = "$dir/t.conf";
open $fh, '>', $conf or die;
for my $so (split ' ', $ENV{TEST_NGINX_LOAD_MODULES} // '') {
    print $fh "load_module $so;\n";
}
print $fh "error_log $dir/t.log;\npid $dir/t.pid;\nevents {}\n"
        . "http { server { listen 127.0.0.1:1; location / {\n"
        . "  insite_gateway_jwt_require scope a; } } }\n";
close $fh;
my $bin = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
my $out = `$bin -t -p $dir/ -c $conf 2>&1`;
isnt($?, 0, 'nginx -t: require without insite_gateway_jwt');
like($out, qr/insite_gateway_jwt_require needs insite_gateway_jwt on or optional/,
     '... says why');

done_testing;
