# The record names whose data was read (insite_gdpr_data_subject, default
# the user), its data_type comes from the configuration (the location's
# name by default, never a path segment the client picks), and methods
# other than GET/HEAD/POST/PUT/PATCH/DELETE are recorded as "other".
use strict;
use warnings;
use lib 't/lib';

use File::Temp ();
use JSON::PP ();
use Test::More;

use Insite::Nginx;
use Insite::Services qw(run_cmd);

plan skip_all => 'TEST_NGINX_LOAD_MODULES not set (run under scripts/test.sh)'
    unless $ENV{TEST_NGINX_LOAD_MODULES};

my $json = JSON::PP->new->utf8;
my $tmp = File::Temp::tempdir('insite-gdpr-subject-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $tmp;
sub slurp { local (@ARGV, $/) = @_; my $d = <>; $d // '' }

my $j = "$tmp/j";
my $n = Insite::Nginx->new(http => "    insite_gdpr_journal $j;\n    insite_gdpr_rotate_time off;\n",
                           server => <<'CONF');
        insite_gdpr_audit_user $http_x_user;
        location /api/v1/portfolio { insite_gdpr_audit on; return 200 "ok\n"; }
        location /api/v1/gdpr/ { insite_gdpr_audit on; insite_gdpr_data_type audit_trail;
                                 insite_gdpr_data_subject $arg_user_id; return 200 "ok\n"; }
        location ~ ^/rx/ { insite_gdpr_audit on; return 200 "ok\n"; }
CONF
my $h = { 'X-User' => 'alice' };
$n->request('GET', '/api/v1/portfolio/anything-i-like', headers => $h);
$n->request('OPTIONS', '/api/v1/portfolio/x', headers => $h);
$n->request('PROPFIND', '/api/v1/portfolio/y', headers => $h);
$n->request('GET', '/api/v1/gdpr/audit-trail?user_id=bob', headers => $h);
$n->request('GET', '/api/v1/gdpr/audit-trail', headers => $h);
$n->request('GET', '/rx/z', headers => $h);
# a worker's records reach its journal file at the end of the loop turn
# that answered (the ring, docs/gdpr.md): on a busy machine a worker can be
# descheduled between its answer and that write, so wait for them
sub records { map { $json->decode($_) } grep { length } map { split /\n/, slurp($_) } sort glob "$j/audit-*.jsonl" }
my @r = records();
for (1 .. 100) { last if @r >= 6; select undef, undef, undef, 0.05; @r = records() }
my %by = map { ("$_->{method} $_->{path}" => $_) } @r;
is(scalar @r, 6, 'six records');

my $p = $by{'GET /api/v1/portfolio/anything-i-like'};
is($p->{data_type}, '/api/v1/portfolio', 'default data_type: the location name, not the last segment');
is($p->{data_subject}, 'alice', 'default data_subject: the user');
# every file: the kernel may have given all six requests to one worker, and
# the other worker's file is then empty
like(join('', map { slurp($_) } glob "$j/audit-*.jsonl"), qr/"user_id":"alice","data_subject":"alice","access_type"/,
     'data_subject follows user_id in the line');
is($by{'OPTIONS /api/v1/portfolio/x'}{access_type}, 'other', 'OPTIONS: other, not read');
is($by{'PROPFIND /api/v1/portfolio/y'}{access_type}, 'other', 'an unknown method: other');
is($by{'GET /api/v1/portfolio/anything-i-like'}{access_type}, 'read', 'GET: read');
is($by{'GET /api/v1/gdpr/audit-trail'}{data_type}, 'audit_trail', 'configured data_type');
is($by{'GET /api/v1/gdpr/audit-trail'}{data_subject}, undef, 'data_subject variable empty: null');
# the path in the record drops the query, the subject comes from it
my ($bob) = grep { ($_->{data_subject} // '') eq 'bob' } @r;
ok($bob && $bob->{user_id} eq 'alice', 'insite_gdpr_data_subject $arg_user_id: alice read bob\'s data');
is($by{'GET /rx/z'}{data_type}, '^/rx/', 'a regex location: its pattern');

my $auditd = $ENV{INSITE_AUDITD_BIN} // 'build/bin/insite-auditd';
SKIP: {
    skip "$auditd not built", 1 unless -x $auditd;
    my ($out, $rc) = run_cmd(20, $auditd, 'verify', $j);
    is($rc, 0, 'insite-auditd verify: the new records chain') or diag($out);
}
$n->check_log;
$n->stop;
done_testing();
