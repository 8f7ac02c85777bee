# insite-auditd: stored positions and a restart.  After the shipper caught
# up (in two rounds, so a stored position has to move on), each chain's row
# in gdpr_audit_positions names the journal's last record (file, byte
# offset = file size, seq, hash).  A restarted shipper
# resumes from there: it produces zero new Kafka messages (messages are
# counted, not distinct event ids: user_events consumers must see each
# record once) and inserts nothing; the next request is shipped once.
#
# Needs INSITE_PG_DSN and INSITE_KAFKA_BOOTSTRAP (scripts/test.sh exports
# them).  INSITE_AUDITD_BIN picks the binary.
use strict;
use warnings;
use lib 't/lib';

use Cwd qw(getcwd);
use File::Temp ();
use JSON::PP ();
use Test::More;
use Time::HiRes qw(time sleep);

use Insite::Nginx;
use Insite::Services qw(free_port wait_port run_cmd);

for my $v (qw(TEST_NGINX_LOAD_MODULES INSITE_PG_DSN INSITE_KAFKA_BOOTSTRAP)) {
    plan skip_all => "$v not set (run under scripts/test.sh or source build/run/services.env)"
        unless $ENV{$v};
}
my $root = getcwd();
my $bin = $ENV{INSITE_AUDITD_BIN} // "$root/build/bin/insite-auditd";
$bin = "$root/$bin" unless $bin =~ m{^/};
plan skip_all => "$bin not built" unless -x $bin;

my $json = JSON::PP->new->utf8;
my $tmp = File::Temp::tempdir('insite-auditd-pos-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $tmp;
my $tag = "pos$$-" . int(time);
my $source = "edge-$tag";
my $dsn = $ENV{INSITE_PG_DSN};

sub slurp { return "" unless -e $_[0]; local (@ARGV, $/) = @_; my $d = <>; $d // "" }
sub wait_for {
    my ($secs, $cond) = @_;
    my $deadline = time + $secs;
    while (time < $deadline) { return 1 if $cond->(); sleep 0.1 }
    return $cond->();
}
sub psql {
    my ($o, $r) = run_cmd(20, 'psql', $dsn, '-X', '-qtA', '-v', 'ON_ERROR_STOP=1', '-c', $_[0]);
    die "psql: $o" if $r;
    chomp $o;
    $o;
}
sub kafka_count {
    my ($k) = run_cmd(30, 'kcat', '-C', '-b', $ENV{INSITE_KAFKA_BOOTSTRAP}, '-t', 'user_events',
                      '-o', 'beginning', '-e', '-q');
    my $n = 0;
    for (split /\n/, $k) {
        my $e = eval { $json->decode($_) } or next;
        $n++ if ($e->{data}{data_type} // '') eq $tag;
    }
    return $n;
}

my $j = "$tmp/journal";
Test::Nginx::Util::spew("$tmp/ok.txt", "ok\n");
my $nginx = Insite::Nginx->new(http => "    insite_gdpr_journal $j;\n", server => <<"CONF");
        location /data/ { insite_gdpr_audit on; insite_gdpr_audit_user \$http_x_user;
                          insite_gdpr_data_type "$tag"; root $tmp; rewrite ^ /ok.txt break; }
CONF

my $api = free_port();
my %env = (
    INSITE_PG_DSN => $dsn, INSITE_PG_MIGRATIONS_DIR => "$root/workers/migrations",
    INSITE_AUDITD_JOURNAL_DIR => $j, INSITE_AUDITD_SOURCE => $source,
    INSITE_AUDITD_HTTP_PORT => $api, INSITE_AUDITD_POLL_INTERVAL => '50ms',
    INSITE_AUDITD_BATCH_SIZE => 500, INSITE_AUDITD_DIGEST_DIR => "$tmp/digests",
    INSITE_AUDITD_KAFKA => 'true', INSITE_KAFKA_BOOTSTRAP => $ENV{INSITE_KAFKA_BOOTSTRAP},
    INSITE_KAFKA_LINGER => '5ms', INSITE_KAFKA_SPOOL_DIR => "$tmp/spool",
);
my $log = "$tmp/auditd.log";
my $pid;
sub start {
    my $from = length slurp($log);
    $pid = Insite::Services::spawn($bin, \%env, $log);
    ok(wait_port($api, 15), "insite-auditd API listens (pid $pid)") or diag(slurp($log));
    return $from;
}
sub stop {
    kill 'TERM', $pid;
    waitpid($pid, 0);
    is($? >> 8, 0, 'the shipper exits cleanly on SIGTERM');
    undef $pid;
}
END { kill 'KILL', $pid if $pid }

my $rows = sub { psql("SELECT count(*) FROM gdpr_audit_trail WHERE source = '$source'") };
sub requests {
    my ($from, $to) = @_;
    for my $i ($from .. $to) {
        my $r = $nginx->get("/data/x?i=$i", headers => { 'X-User' => "u$i" });
        die "request $i: $r->{status}\n" unless ($r->{status} // 0) == 200;
    }
}
# the journal's last record of each chain, as the files say
sub journal_last {
    my %last;
    for my $f (sort glob "$j/audit-*.jsonl") {
        my ($chain) = $f =~ m{/audit-(.+)-\d+\.jsonl$} or next;
        my @l = grep { length } split /\n/, slurp($f);
        next unless @l;
        my $r = $json->decode($l[-1]);
        my ($name) = $f =~ m{([^/]+)$};
        $last{$chain} = join ' ', $name, -s $f, $r->{seq}, $r->{hash}
            if !$last{$chain} || $r->{seq} > (split ' ', $last{$chain})[2];
    }
    return %last;
}
sub positions_at_end {
    my ($what) = @_;
    my %last = journal_last();
    my $stored = sub { psql("SELECT chain, file, \"offset\", seq, hash FROM gdpr_audit_positions"
                            . " WHERE source = '$source' ORDER BY chain") };
    ok(keys %last && wait_for(10, sub {
        my %pos = map { my @c = split /\|/; ($c[0] => "@c[1 .. 4]") } split /\n/, $stored->();
        JSON::PP->new->canonical->encode(\%pos) eq JSON::PP->new->canonical->encode(\%last);
    }), "$what: each stored position is the journal's last record (file, offset, seq, hash)")
        or diag($stored->() . "\njournal:\n" . join("\n", map { "$_ $last{$_}" } sort keys %last));
}
sub restart_ships_nothing {
    my ($n, $what) = @_;
    stop();
    my $from = start();
    ok(wait_for(15, sub { substr(slurp($log), $from) =~ /chain position\(s\) of source "\Q$source\E" loaded/ }),
       "$what: the restarted shipper loaded its positions");
    sleep 2;            # ~40 passes at 50ms
    is(kafka_count(), $n, "$what: after the restart, zero new Kafka messages");
    is($rows->(), $n, "$what: after the restart, no new rows");
}

# two rounds, so that the stored positions have to move on
my $N = 40;
requests(1, $N / 2);
start();
ok(wait_for(30, sub { (eval { $rows->() } // 0) >= $N / 2 }), 'first round shipped') or diag(slurp($log));
positions_at_end('first round');
requests($N / 2 + 1, $N);
ok(wait_for(30, sub { $rows->() >= $N }), "$N rows shipped") or diag(slurp($log));
ok(wait_for(15, sub { kafka_count() >= $N }), "$N messages on user_events");
positions_at_end('second round');
sleep 0.5;
is(kafka_count(), $N, "exactly $N messages (one per record)");
restart_ships_nothing($N, 'first restart');

# it still ships what is new, once, and moves on from there
requests($N + 1, $N + 3);
ok(wait_for(15, sub { $rows->() == $N + 3 }), 'three more rows shipped');
ok(wait_for(15, sub { kafka_count() >= $N + 3 }), 'their messages are produced');
positions_at_end('after the restart');
sleep 0.5;
is(kafka_count(), $N + 3, 'once');
restart_ships_nothing($N + 3, 'second restart');
stop();

is(psql("SELECT count(*) FROM security_incidents WHERE source = '$source'"), 0, 'no chain incidents');
unlike(slurp($log), qr/AddressSanitizer|runtime error:|LeakSanitizer/, 'no sanitizer reports');
$nginx->check_log;
$nginx->stop;
done_testing();
