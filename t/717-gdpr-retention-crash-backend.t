# Retention killed -9 while deleting in another database (a data-map target
# in "backend"): the batch that database committed just before the kill is
# not lost from the count.  The test holds the run's log row (FOR NO KEY
# UPDATE) so the worker is stopped exactly between the other database's
# COMMIT and its own count of that batch, kills it there, and checks that
# the log row plus gdpr_retention_pending account for every deleted row;
# the next run asks the backend (txid_status) and ends with rows_affected
# exactly the rows that went.  A pending batch whose transaction aborted is
# dropped, not counted.  docs/gdpr-retention.md, "Another database".

use strict;
use warnings;
use lib 't/lib';

use IO::Handle ();
use POSIX ();
use Test::More;

use Insite::GDPRWorker qw(psql wait_for slurp);

my $w = Insite::GDPRWorker::setup();
plan skip_all => "$w->{bin} not built" unless -x $w->{bin};
my ($dsn, $bdsn) = ($w->{dsn}, $w->{bdsn});

Insite::GDPRWorker::retention_now($w, 1);          # migrations
psql($dsn, "UPDATE gdpr_retention_policies SET is_active = data_type = 'user_activity'");
my $N = 20000;
psql($bdsn, "CREATE TABLE user_activity (id serial PRIMARY KEY, user_id text, note text, created_at timestamptz);"
     . " INSERT INTO user_activity (user_id, note, created_at) SELECT 'u' || g, 'old', now() - interval '100 days' FROM generate_series(1, $N) g;"
     . " INSERT INTO user_activity (user_id, note, created_at) SELECT 'u' || g, 'new', now() - interval '10 days' FROM generate_series(1, 50) g");
my $gone = sub { $N - psql($bdsn, "SELECT count(*) FROM user_activity WHERE note = 'old'") };

# ---- a run, stopped between the backend's COMMIT and our count, killed -9
my %env = (%{ $w->{env} }, INSITE_GDPR_RETENTION_BATCH => 200, INSITE_GDPR_RETENTION_PAUSE => '200ms');   # 100 batches, 20 s
my $pid = fork // die;
if (!$pid) {
    $ENV{$_} = $env{$_} for keys %env;
    open STDOUT, '>', "$w->{tmp}/run1.out"; open STDERR, '>', "$w->{tmp}/run1.log";
    exec $w->{bin}, '--retention-now'
        or POSIX::_exit(127);
}
END { kill 'KILL', $pid if $pid }
ok(wait_for(60, sub { psql($dsn, "SELECT coalesce(max(rows_affected), 0) FROM gdpr_audit_log WHERE data_type = 'user_activity'") >= 400 }),
   'the run is under way in the backend database') or diag(slurp("$w->{tmp}/run1.log"));
open(my $holder, '|-', 'psql', $dsn, '-X', '-q', '-v', 'ON_ERROR_STOP=1') or die "psql: $!";
$holder->autoflush(1);
print $holder "BEGIN; SELECT id FROM gdpr_audit_log WHERE data_type = 'user_activity' FOR NO KEY UPDATE;\n";
my $waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            . " AND query LIKE 'WITH d AS (DELETE FROM gdpr_retention_pending%'";
ok(wait_for(60, sub { psql($dsn, $waiting) >= 1 }),
   'the worker waits to count a batch the backend has committed') or diag(slurp("$w->{tmp}/run1.log"));
kill 'KILL', $pid;
waitpid $pid, 0;
is($? & 127, 9, 'killed -9 there');
undef $pid;
# its session would finish the statement on its own once unblocked: end it,
# as a crash of the machine would
psql($dsn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'WITH d AS (DELETE FROM gdpr_retention_pending%'"
         . " AND pid <> pg_backend_pid()");
ok(wait_for(30, sub { psql($dsn, $waiting) == 0 }), "the killed worker's session is gone");
print $holder "ROLLBACK;\n";
close $holder;

my ($logged, $status) = split /\|/, psql($dsn, "SELECT rows_affected, status FROM gdpr_audit_log WHERE data_type = 'user_activity'");
my $pending = psql($dsn, "SELECT coalesce(sum(rows), 0) FROM gdpr_retention_pending");
my $went = $gone->();
is($status, 'running', 'the log row is left running');
ok($went > 0 && $went < $N, "part of the rows went ($went of $N)");
is($pending, 200, 'the committed batch is pending (200 rows)');
is($logged + $pending, $went, "log ($logged) + pending ($pending) = the rows that went ($went)");

# ---- the rerun settles it and finishes
my ($sum, $rc) = Insite::GDPRWorker::retention_now($w, 0, INSITE_GDPR_RETENTION_BATCH => 200, INSITE_GDPR_RETENTION_PAUSE => '0');
is($rc, 0, 'rerun exits 0') or diag(slurp("$w->{tmp}/now.err"));
my ($p) = grep { $_->{data_type} eq 'user_activity' } @{ $sum->{policies} // [] };
ok($p->{resumed}, 'the interrupted run resumed');
is($p->{rows}, $N, 'its summary counts every row');
is(psql($dsn, "SELECT count(*) || '|' || max(rows_affected) || '|' || min(status) || '|' || (max(details::text) LIKE '%count_may_be_low%')"
              . " FROM gdpr_audit_log WHERE data_type = 'user_activity'"),
   "1|$N|completed|false", 'one log row, exactly every deleted row, completed, no uncertainty');
is(psql($dsn, "SELECT count(*) FROM gdpr_retention_pending"), 0, 'nothing left pending');
is($gone->(), $N, 'every expired row gone');
is(psql($bdsn, "SELECT count(*) FROM user_activity WHERE note = 'new'"), 50, 'every young row kept');
like(slurp("$w->{tmp}/now.err"), qr/batch of 200 rows left pending .* committed/, 'the rerun logs what it settled');

# ---- a pending batch whose transaction aborted is not counted
my $aborted = psql($bdsn, "BEGIN; SELECT txid_current(); ROLLBACK;");
($aborted) = $aborted =~ /(\d+)/;
psql($bdsn, "INSERT INTO user_activity (user_id, note, created_at) VALUES ('x', 'old', now() - interval '100 days')");
psql($dsn, "INSERT INTO gdpr_audit_log (action, data_type, target, cutoff, status) VALUES"
         . " ('automated_deletion', 'user_activity', 'backend_user_activity', now() - interval '90 days', 'running');"
         . " INSERT INTO gdpr_retention_pending (log_id, database, txid, rows)"
         . " SELECT max(id), 'backend', $aborted, 200 FROM gdpr_audit_log");
($sum, $rc) = Insite::GDPRWorker::retention_now($w, 0);
is($rc, 0, 'third run exits 0') or diag(slurp("$w->{tmp}/now.err"));
is(psql($dsn, "SELECT rows_affected || '|' || status FROM gdpr_audit_log WHERE data_type = 'user_activity' ORDER BY id DESC LIMIT 1"),
   '1|completed', 'the aborted batch is not counted; the one real row is');
is(psql($dsn, "SELECT count(*) FROM gdpr_retention_pending"), 0, 'the aborted batch is dropped');

done_testing();
