# The journal directory is nginx's, like a temp path: started as root with
# unprivileged workers (user nobody), the master creates a missing directory
# (and its parents) and hands it to the worker user, so records are written;
# nginx -t fails when the worker user could not write there; /healthz
# reports the journal of the worker that answers ("audit":"ok" |
# "unwritable" -> 503 "degraded").
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
plan skip_all => 'needs root (the master hands the directory to user nobody)' if $>;

my $json = JSON::PP->new->utf8;
my $tmp = File::Temp::tempdir('insite-gdpr-dir-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $tmp;
Test::Nginx::Util::spew("$tmp/ok.txt", "ok\n");
my $nobody = getpwnam('nobody') // 65534;
my $group = getgrgid((getpwnam('nobody'))[3] // 65534) // 'nogroup';
my $user = "user nobody $group;";

sub slurp { local (@ARGV, $/) = @_; my $d = <>; $d // '' }
sub nginx_t {
    my ($http) = @_;
    my $conf = "$tmp/t.conf";
    Test::Nginx::Util::spew($conf, join('', map { "load_module $_;\n" } split ' ', $ENV{TEST_NGINX_LOAD_MODULES})
        . "$user\nerror_log $tmp/t-error.log;\npid $tmp/t.pid;\nevents {}\n"
        . "http { $http server { listen 127.0.0.1:1; location / { insite_gdpr_audit on; } } }\n");
    my ($out, $rc) = run_cmd(10, $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx', '-t', '-p', "$tmp/", '-c', $conf);
    return ($rc, $out);
}

# ---- a fresh directory (and parents) for unprivileged workers
my $j = "$tmp/fresh/deeper/journal";
ok(!-e "$tmp/fresh", 'the journal directory does not exist yet');
my $n = Insite::Nginx->new(main => $user, http => "    insite_gdpr_journal $j;\n", server => <<"CONF");
        location /data { insite_gdpr_audit on; insite_gdpr_audit_user \$http_x_user;
                         insite_gdpr_audit_fail closed; root $tmp; rewrite ^ /ok.txt break; }
        location = /healthz { insite_healthz; }
CONF
my @w = map { (stat "/proc/$_")[4] } grep { /^\d+$/ } split ' ', `pgrep -P ${\ $n->pid}`;
ok(@w && !grep({ $_ != $nobody } @w), 'workers run as nobody');
is((stat $j)[4], $nobody, 'the master created the directory for the worker user');
for my $i (1 .. 6) {
    my $r = $n->get("/data/$i", headers => { 'X-User' => 'alice' });
    is($r->{status}, 200, "audited request $i served");
}
# a worker's records reach the journal at the end of the loop turn that
# answered (the ring): wait for them, a busy machine can delay that turn
sub recs { map { $json->decode($_) } grep { length } map { split /\n/, slurp($_) } glob "$j/audit-*.jsonl" }
my @recs = recs();
for (1 .. 100) { last if @recs >= 6; select undef, undef, undef, 0.05; @recs = recs() }
is(scalar @recs, 6, 'six records written by the unprivileged workers');
my $h = $n->get('/healthz');
is($h->{status}, 200, 'healthz: 200 while the journal is writable');
like($h->{body}, qr/^\{"status":"ok",.*,"audit":"ok"\}$/, 'healthz: "audit":"ok"');

# ---- made unwritable at runtime: every worker says so
chmod 0500, $j;
my %seen;
for (1 .. 20) {
    my $r = $n->get('/healthz');
    $seen{"$r->{status} " . ($r->{body} =~ /"status":"(\w+)".*"audit":"(\w+)"/ ? "$1/$2" : $r->{body})}++;
}
is_deeply([sort keys %seen], ['503 degraded/unwritable'], 'unwritable directory: 503, "audit":"unwritable"')
    or diag explain \%seen;
chmod 0700, $j;
like($n->get('/healthz')->{body}, qr/"audit":"ok"/, 'writable again: ok');
$n->check_log;
$n->stop;

# ---- nginx -t: directories the worker user cannot write
mkdir "$tmp/private", 0700;                     # root's, not searchable by nobody
my ($rc, $out) = nginx_t("insite_gdpr_journal $tmp/private/j;");
ok($rc && $out =~ /insite gdpr: journal .* the worker user \(uid $nobody\) cannot enter "\Q$tmp\E\/private"/,
   'nginx -t fails: a parent the worker user cannot enter') or diag($out);
Test::Nginx::Util::spew("$tmp/file", "x");
($rc, $out) = nginx_t("insite_gdpr_journal $tmp/file/j;");
ok($rc && $out =~ /mkdir\(\) "\Q$tmp\E\/file\/j" failed/, 'nginx -t fails: the directory cannot be made')
    or diag($out);
($rc, $out) = nginx_t("insite_gdpr_journal $tmp/ok;");
ok(!$rc, 'nginx -t passes for a directory it can make') or diag($out);
is((stat "$tmp/ok")[4], $nobody, '... and it belongs to the worker user');
($rc, $out) = nginx_t("insite_gdpr_journal $tmp/ok; proxy_temp_path $tmp/ok;");
ok($rc && $out =~ /the same path name/, 'nginx -t fails: the journal shared with a temp path') or diag($out);

done_testing();
