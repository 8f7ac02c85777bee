# insite_gdpr_fsync 1s: the journal is synced about once a second from
# nginx's thread pool, not in the event loop; records stay one per request
# and the chain verifies, also across a size rotation (the finished file is
# synced and closed by the thread).
use strict;
use warnings;
use lib 't/lib';
use Cwd qw(getcwd);
use File::Temp ();
use Test::More;
use Time::HiRes qw(sleep);
use Insite::Nginx;
use Insite::Services qw(run_cmd);

plan skip_all => 'TEST_NGINX_LOAD_MODULES not set (run under scripts/test.sh)'
    unless defined $ENV{TEST_NGINX_LOAD_MODULES};   # empty: a static nginx
my $auditd = getcwd() . '/build/bin/insite-auditd';
plan skip_all => "$auditd not built" unless -x $auditd;

my $tmp = File::Temp::tempdir('insite-gdpr-fsync-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $tmp;
my $j = "$tmp/journal";

my $n = Insite::Nginx->new(
    main   => 'thread_pool default threads=2;',
    http   => "    insite_gdpr_journal $j;\n    insite_gdpr_fsync 1s;\n"
            . "    insite_gdpr_rotate_size 4k;\n",
    server => "        location /data { insite_gdpr_audit on;\n"
            . "            insite_gdpr_audit_user \$http_x_user; return 200 \"ok\\n\"; }\n"
            . "        location = /metrics { insite_metrics; }",
);

my $ok = 0;
for my $i (1 .. 120) {
    my $r = $n->get("/data/prices?i=$i", headers => { 'X-User' => 'u1' });
    $ok++ if ($r->{status} // 0) == 200;
    sleep 0.02;
}
is($ok, 120, 'every audited request answered');
sleep 2.5;

my ($syncs) = $n->get('/metrics')->{body} =~ /^insite_gdpr_fsyncs_total (\d+)$/m;
cmp_ok($syncs // 0, '>=', 2, 'the journal was synced (by the thread pool)');

# the pool nginx created for the syncs: 2 threads besides the worker's own
my ($w) = $n->workers;
my ($threads) = (Test::Nginx::Util::slurp("/proc/$w/status") =~ /^Threads:\s+(\d+)/m);
is($threads, 3, 'a worker runs the thread pool the syncs go to');

my @files = glob "$j/audit-*.jsonl";
cmp_ok(scalar @files, '>', 1, 'rotated by size into ' . scalar(@files) . ' files');
my $lines = 0;
for my $f (@files) { open my $fh, '<', $f or die; $lines++ while <$fh>; }
is($lines, 120, 'one record per request');

my ($out, $rc) = run_cmd(20, $auditd, 'verify', $j);
is($rc, 0, 'the chain verifies across the rotated files') or diag $out;

$n->stop;
$n->check_log;
done_testing;
