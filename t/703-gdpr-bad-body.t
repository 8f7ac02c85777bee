# Bad input at the data-subject rights API: a 1 MB body gets 400 with a JSON
# reason (payload_too_large), both from insite-gdpr itself (its HTTP layer's
# body_max_status) and through nginx, where the location of the example
# configuration turns nginx's own 413 into the same 400 JSON.  Nothing is
# recorded for it.  Another worker API keeps the shared default (413).
#
# Needs INSITE_PG_DSN (scripts/test.sh).  INSITE_GDPR_BIN picks the binary.
use strict;
use warnings;
use lib 't/lib';

use Cwd qw(getcwd);
use File::Temp ();
use JSON::PP ();
use Test::More;

use Insite::Gdpr qw(slurp token);
use Insite::Nginx;
use Insite::Services qw(free_port wait_port http_request run_cmd start_redis);

for my $v (qw(TEST_NGINX_LOAD_MODULES INSITE_PG_DSN)) {
    plan skip_all => "$v not set (run under scripts/test.sh)" unless $ENV{$v};
}
my $root = getcwd();
my $bin = $ENV{INSITE_GDPR_BIN} // "$root/build/bin/insite-gdpr";
$bin = "$root/$bin" unless $bin =~ m{^/};
my $auditd = "$root/build/bin/insite-auditd";
plan skip_all => "$bin not built" unless -x $bin && -x $auditd;

my $json = JSON::PP->new->utf8->canonical;
my $tmp = File::Temp::tempdir('insite-badbody-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $tmp;
my $dsn = $ENV{INSITE_PG_DSN};
my $tag = "bb$$";
sub psql { Insite::Gdpr::psql($dsn, $_[0]) }

my $redis = start_redis();
my $api = free_port();
my %env = (
    INSITE_PG_DSN => $dsn, INSITE_PG_MIGRATIONS_DIR => "$root/workers/migrations",
    INSITE_REDIS_PORT => $redis->port, INSITE_GDPR_HTTP_PORT => $api,
);
my $pid = Insite::Services::spawn($bin, \%env, "$tmp/gdpr.log");
END { kill 'TERM', $pid if $pid }
ok(wait_port($api, 20), 'insite-gdpr listens') or diag(slurp("$tmp/gdpr.log"));

my $mb = '{"consent_type":"analytics","granted":true,"pad":"' . ('x' x (1 << 20)) . '"}';
my $before = psql("SELECT count(*) FROM user_consent_events WHERE user_id = '$tag-a'");

# at the worker
for my $path ('/api/v1/gdpr/consents', '/api/v1/gdpr/delete') {
    my $r = http_request($api, 'POST', $path, headers => { 'X-User-Id' => "$tag-a" }, body => $mb, timeout => 20);
    is($r->{status}, 400, "worker $path: 1 MB body -> 400");
    my $b = eval { $json->decode($r->{body}) } // {};
    is($b->{error}, 'payload_too_large', "worker $path: JSON reason payload_too_large");
    like($b->{message} // '', qr/body larger than 65536 bytes/, "worker $path: the limit named");
}
# a body at the limit is still read and judged on its content
my $r = http_request($api, 'POST', '/api/v1/gdpr/consents', headers => { 'X-User-Id' => "$tag-a" },
                     body => '{"consent_type":"nope","granted":true}', timeout => 10);
is($r->{status}, 400, 'a small bad body: 400');
is((eval { $json->decode($r->{body}) } // {})->{error}, 'unknown_consent_type', '... with its own reason');

# the shared default is unchanged for other worker APIs: insite-auditd answers 413
my $aport = free_port();
my $apid = Insite::Services::spawn($auditd, {
    INSITE_PG_DSN => $dsn, INSITE_PG_MIGRATIONS_DIR => "$root/workers/migrations",
    INSITE_AUDITD_JOURNAL_DIR => "$tmp/j", INSITE_AUDITD_HTTP_PORT => $aport,
    INSITE_AUDITD_SOURCE => "edge-$tag", INSITE_AUDITD_DIGEST_DIR => "$tmp/d" }, "$tmp/auditd.log");
END { kill 'TERM', $apid if $apid }
ok(wait_port($aport, 20), 'insite-auditd listens') or diag(slurp("$tmp/auditd.log"));
$r = http_request($aport, 'GET', '/api/v1/gdpr/audit-trail', headers => { 'X-User-Id' => "$tag-a" },
                  body => 'x' x (2 << 20), timeout => 20);
is($r->{status}, 413, 'another worker API keeps 413 payload_too_large');

# through nginx, configured like nginx.conf.example's rights location
my $n = Insite::Nginx->new(http => "    insite_gdpr_journal $tmp/journal;\n", server => <<"CONF");
        insite_gateway_jwt_secret "badbody-secret";
        location ~ ^/api/v1/gdpr/(consents|delete|deletion-status|export)(/|\$) {
            insite_gateway_jwt         on;
            client_max_body_size       64k;
            error_page 413 = \@insite_gdpr_too_large;
            proxy_set_header           X-User-Id \$insite_user_id;
            proxy_pass                 http://127.0.0.1:$api;
        }
        location \@insite_gdpr_too_large {
            default_type  application/json;
            return 400 '{"error":"payload_too_large","message":"body larger than 65536 bytes"}\\n';
        }
CONF
# the error_page and named location are the example's, byte for byte
my $example = slurp("$root/nginx.conf.example");
like($example, qr/error_page 413 = \@insite_gdpr_too_large;/, 'the example has the error_page');
like($example, qr/\Qreturn 400 '{"error":"payload_too_large","message":"body larger than 65536 bytes"}\n';\E/,
     'the example has the named location');
my $tok = token('badbody-secret', "$tag-a");
$r = $n->request('POST', '/api/v1/gdpr/consents', headers => { Authorization => "Bearer $tok",
                 'Content-Type' => 'application/json' }, body => $mb, timeout => 20);
is($r->{status}, 400, 'through nginx: 1 MB body -> 400');
like($r->{headers}{'content-type'} // '', qr{application/json}, 'through nginx: JSON');
is((eval { $json->decode($r->{body}) } // {})->{error}, 'payload_too_large', 'through nginx: reason payload_too_large');
$r = $n->request('POST', '/api/v1/gdpr/consents', headers => { Authorization => "Bearer $tok",
                 'Content-Type' => 'application/json' }, body => '{"consent_type":"analytics","granted":true}', timeout => 10);
is($r->{status}, 200, 'through nginx: a normal body passes');
is(psql("SELECT count(*) FROM user_consent_events WHERE user_id = '$tag-a'"), $before + 1,
   'only the normal body was recorded');
done_testing();
