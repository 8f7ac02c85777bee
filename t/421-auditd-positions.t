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

use JSON::PP ();
use Test::More;
use Time::HiRes qw(sleep);

use Insite::Auditd qw(slurp wait_for);
use Insite::Services qw(run_cmd);

my $w = Insite::Auditd->new(name => 'pos', needs => ['INSITE_KAFKA_BOOTSTRAP'], env => {
    INSITE_AUDITD_BATCH_SIZE => 500,
    INSITE_AUDITD_KAFKA => 'true', INSITE_KAFKA_BOOTSTRAP => $ENV{INSITE_KAFKA_BOOTSTRAP},
    INSITE_KAFKA_LINGER => '5ms',
});
$w->{env}{INSITE_KAFKA_SPOOL_DIR} = "$w->{tmp}/spool";
my ($tag, $source, $j, $log) = @$w{qw(tag source journal log)};
my $json = JSON::PP->new->utf8;

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
    my $stored = sub { $w->psql("SELECT chain, file, \"offset\", seq, hash FROM gdpr_audit_positions"
                            . " WHERE source = '$source' ORDER BY chain") };
    ok(keys %last && wait_for(10, sub {
        # a chain whose worker took no request has an empty file: a stored
        # position there is at offset 0, seq 0 (nothing shipped), which the
        # files' side has no record for
        my %pos = map { my @c = split /\|/; $c[2] == 0 && $c[3] == 0 ? () : ($c[0] => "@c[1 .. 4]") }
                  split /\n/, $stored->();
        JSON::PP->new->canonical->encode(\%pos) eq JSON::PP->new->canonical->encode(\%last);
    }), "$what: each stored position is the journal's last record (file, offset, seq, hash)")
        or diag($stored->() . "\njournal:\n" . join("\n", map { "$_ $last{$_}" } sort keys %last));
}
sub restart_ships_nothing {
    my ($n, $what) = @_;
    $w->stop;
    my $from = $w->start;
    ok(wait_for(15, sub { substr(slurp($log), $from) =~ /chain position\(s\) of source "\Q$source\E" loaded/ }),
       "$what: the restarted shipper loaded its positions");
    sleep 2;            # ~40 passes at 50ms
    is(kafka_count(), $n, "$what: after the restart, zero new Kafka messages");
    is($w->rows, $n, "$what: after the restart, no new rows");
}

# two rounds, so that the stored positions have to move on
my $N = 40;
$w->requests(1, $N / 2);
$w->start;
ok(wait_for(30, sub { (eval { $w->rows } // 0) >= $N / 2 }), 'first round shipped') or diag(slurp($log));
positions_at_end('first round');
$w->requests($N / 2 + 1, $N);
ok(wait_for(30, sub { $w->rows >= $N }), "$N rows shipped") or diag(slurp($log));
ok(wait_for(15, sub { kafka_count() >= $N }), "$N messages on user_events");
positions_at_end('second round');
sleep 0.5;
is(kafka_count(), $N, "exactly $N messages (one per record)");
restart_ships_nothing($N, 'first restart');

# it still ships what is new, once, and moves on from there
$w->requests($N + 1, $N + 3);
ok(wait_for(15, sub { $w->rows == $N + 3 }), 'three more rows shipped');
ok(wait_for(15, sub { kafka_count() >= $N + 3 }), 'their messages are produced');
positions_at_end('after the restart');
sleep 0.5;
is(kafka_count(), $N + 3, 'once');
restart_ships_nothing($N + 3, 'second restart');
$w->stop;
$w->finish;
done_testing();
