# Retention policies (docs/gdpr-retention.md): every shipped policy against
# rows seeded on both sides of its cutoff (and, for filtered targets, old
# rows the filter keeps), in our database and a "backend" one of a
# PostgreSQL of the test's own.  A dry run counts exactly and changes
# nothing; the run deletes exactly the expired rows and logs one
# gdpr_audit_log row per policy; a policy whose table is missing fails, is
# logged with its error, and the run goes on.

use strict;
use warnings;
use lib 't/lib';

use JSON::PP ();
use Test::More;

use Insite::GDPRWorker qw(psql);

my $w = Insite::GDPRWorker::setup();
plan skip_all => "$w->{bin} not built" unless -x $w->{bin};
my ($dsn, $bdsn) = @{$w}{qw(dsn bdsn)};

# the schema first (a dry run applies the migrations)
my ($sum, $rc) = Insite::GDPRWorker::retention_now($w, 1);
ok($sum, 'dry run on an empty database answers') or diag(Insite::GDPRWorker::slurp("$w->{tmp}/now.err"));
my %days = map { split /\|/ } split /\n/, psql($dsn, "SELECT data_type, retention_days FROM gdpr_retention_policies");
is($days{price_history}, 730, 'plan default: price_history 730 d');
is($days{user_activity}, 90, 'plan default: user_activity 90 d');
is($days{sentiment_data}, 180, 'plan default: sentiment_data 180 d');
is($days{system_logs}, 30, 'plan default: system_logs 30 d');
is($days{error_logs}, 90, 'plan default: error_logs 90 d');
is($days{user_session}, 90, 'plan default: user_session 90 d');

# age of a row `o` days past (+1) or before (-1) the policy's cutoff
sub old { "now() - interval '" . ($days{$_[0]} + 1) . " days'" }
sub young { "now() - interval '" . ($days{$_[0]} - 1) . " days'" }

# backend: error_logs is missing on purpose (its policy must fail)
for my $t (qw(user_activity user_sessions system_logs)) {
    my $dt = { user_activity => 'user_activity', user_sessions => 'user_session', system_logs => 'system_logs' }->{$t};
    psql($bdsn, "CREATE TABLE $t (id serial PRIMARY KEY, user_id text, note text, created_at timestamptz);"
         . " INSERT INTO $t (user_id, note, created_at) SELECT 'u' || g, 'old', " . old($dt) . " FROM generate_series(1, 3) g;"
         . " INSERT INTO $t (user_id, note, created_at) SELECT 'u' || g, 'new', " . young($dt) . " FROM generate_series(1, 2) g");
}
psql($dsn, join ';',
    "INSERT INTO stock_prices (symbol, ts, interval, source, close) SELECT 'AAPL', " . old('price_history') . " - g * interval '1 minute', '1m', 'old', 1 FROM generate_series(1, 4) g",
    "INSERT INTO stock_prices (symbol, ts, interval, source, close) SELECT 'AAPL', " . young('price_history') . " - g * interval '1 minute', '1m', 'new', 1 FROM generate_series(1, 2) g",
    "INSERT INTO social_posts (source, source_id, author, text, created_at) SELECT 'reddit', 'old-' || g, 'alice', 'x', " . old('social_posts') . " FROM generate_series(1, 3) g",
    "INSERT INTO social_posts (source, source_id, author, text, created_at) SELECT 'reddit', 'new-' || g, 'bob', 'y', " . young('social_posts') . " FROM generate_series(1, 2) g",
    # social sources expire; another source's old rows stay (the filter)
    "INSERT INTO sentiment_post_scores (source, source_id, symbol, ts, compound, pos, neg, neu) SELECT s, 'old-' || g, 'AAPL', " . old('sentiment_data') . ", 0, 0, 0, 1 FROM generate_series(1, 2) g, unnest(ARRAY['reddit', 'stocktwits', 'news']) s",
    "INSERT INTO sentiment_post_scores (source, source_id, symbol, ts, compound, pos, neg, neu) SELECT 'reddit', 'new-' || g, 'AAPL', " . young('sentiment_data') . ", 0, 0, 0, 1 FROM generate_series(1, 2) g",
    "INSERT INTO gdpr_audit_trail (id, ts, user_id, access_type, status, result, worker, seq, prev_hash, hash, source, record) SELECT gen_random_uuid(), " . old('audit_trail') . ", 'old', 'read', 200, true, '0', g, 'x', 'y', 't', '{}' FROM generate_series(1, 5) g",
    "INSERT INTO gdpr_audit_trail (id, ts, user_id, access_type, status, result, worker, seq, prev_hash, hash, source, record) SELECT gen_random_uuid(), " . young('audit_trail') . ", 'new', 'read', 200, true, '0', 100 + g, 'x', 'y', 't', '{}' FROM generate_series(1, 2) g",
    # finished jobs expire, a running one stays however old
    "INSERT INTO collection_jobs (job_id, kind, status, updated_at) SELECT gen_random_uuid(), 'old', s, " . old('collector_jobs') . " FROM unnest(ARRAY['done', 'failed', 'cancelled', 'running']) s",
    "INSERT INTO collection_jobs (job_id, kind, status, updated_at) SELECT gen_random_uuid(), 'new', 'done', " . young('collector_jobs') . " FROM generate_series(1, 2)",
    # closed erasure requests go with their steps; an open one stays
    "INSERT INTO gdpr_deletion_requests (id, user_pseudonym, status, requested_at) SELECT gen_random_uuid(), 'old', s, " . old('deletion_requests') . " FROM unnest(ARRAY['completed', 'failed', 'cancelled', 'pending']) s",
    "INSERT INTO gdpr_deletion_requests (id, user_pseudonym, status, requested_at) VALUES (gen_random_uuid(), 'new', 'completed', " . young('deletion_requests') . ")",
    "INSERT INTO gdpr_deletion_steps (request_id, target, action) SELECT id, 'pg:x', 'delete' FROM gdpr_deletion_requests",
    "INSERT INTO gdpr_data_exports (id, user_id, status, requested_at) SELECT gen_random_uuid(), 'old', s, " . old('export_requests') . " FROM unnest(ARRAY['expired', 'failed', 'ready']) s",
    "INSERT INTO gdpr_data_exports (id, user_id, status, requested_at) SELECT gen_random_uuid(), 'new', 'expired', " . young('export_requests') . " FROM generate_series(1, 2)",
);
my %expect = (price_history => 4, social_posts => 3, sentiment_data => 4, audit_trail => 5, collector_jobs => 3,
              deletion_requests => 3, export_requests => 2, user_activity => 3, user_session => 3, system_logs => 3);

my $snapshot = sub {
    join ',', map { psql($dsn, "SELECT count(*) FROM $_") } qw(stock_prices social_posts sentiment_post_scores
        gdpr_audit_trail collection_jobs gdpr_deletion_requests gdpr_deletion_steps gdpr_data_exports gdpr_audit_log);
};
my $before = $snapshot->();
my $bbefore = psql($bdsn, "SELECT (SELECT count(*) FROM user_activity) || ',' || (SELECT count(*) FROM user_sessions) || ',' || (SELECT count(*) FROM system_logs)");

# ---- dry run: exact counts, nothing changes
($sum, $rc) = Insite::GDPRWorker::retention_now($w, 1);
my %by = map { $_->{data_type} => $_ } @{ $sum->{policies} // [] };
is($by{$_}{rows}, $expect{$_}, "dry run: $_ would delete $expect{$_}") for sort keys %expect;
is($by{$_}{status}, 'dry_run', "dry run: $_ status dry_run") for qw(price_history user_activity);
is($by{error_logs}{status}, 'failed', 'dry run: error_logs (no table) fails');
is($snapshot->(), $before, 'dry run: no row changed, nothing logged');
is(psql($bdsn, "SELECT (SELECT count(*) FROM user_activity) || ',' || (SELECT count(*) FROM user_sessions) || ',' || (SELECT count(*) FROM system_logs)"),
   $bbefore, 'dry run: backend untouched');

# ---- the run (small batches: several per policy)
($sum, $rc) = Insite::GDPRWorker::retention_now($w, 0, INSITE_GDPR_RETENTION_BATCH => 2, INSITE_GDPR_RETENTION_PAUSE => '10ms');
is($rc, 1, 'a failed policy makes --retention-now exit 1');
%by = map { $_->{data_type} => $_ } @{ $sum->{policies} // [] };
is($sum->{failed}, 1, 'one policy failed');
is($by{error_logs}{status}, 'failed', 'error_logs failed');
like($by{error_logs}{error} // '', qr/error_logs.*does not exist/, 'with the reason');
is($by{$_}{status}, 'completed', "$_ completed after the failure") for sort keys %expect;

is(psql($dsn, "SELECT string_agg(DISTINCT source, ',') FROM stock_prices"), 'new', 'stock_prices: exactly the old bars gone');
is(psql($dsn, "SELECT string_agg(source_id, ',' ORDER BY source_id) FROM social_posts"), 'new-1,new-2', 'social_posts: exactly the old posts (and their authors) gone');
is(psql($dsn, "SELECT string_agg(source || ':' || source_id, ',' ORDER BY source, source_id) FROM sentiment_post_scores"),
   'news:old-1,news:old-2,reddit:new-1,reddit:new-2', 'sentiment: old social scores gone, other sources kept');
is(psql($dsn, "SELECT string_agg(DISTINCT user_id, ',') FROM gdpr_audit_trail"), 'new', 'audit trail: records past the legal retention gone');
is(psql($dsn, "SELECT string_agg(kind || ':' || status, ',' ORDER BY kind, status) FROM collection_jobs"),
   'new:done,new:done,old:running', 'collector jobs: finished old jobs gone, a running one kept');
is(psql($dsn, "SELECT string_agg(user_pseudonym || ':' || status, ',' ORDER BY user_pseudonym, status) FROM gdpr_deletion_requests"),
   'new:completed,old:pending', 'deletion requests: closed old ones gone, an open one kept');
is(psql($dsn, "SELECT count(*) FROM gdpr_deletion_steps"), 2, 'their steps went with them');
is(psql($dsn, "SELECT string_agg(user_id || ':' || status, ',' ORDER BY user_id, status) FROM gdpr_data_exports"),
   'new:expired,new:expired,old:ready', 'exports: old expired/failed gone');
for my $t (qw(user_activity user_sessions system_logs)) {
    is(psql($bdsn, "SELECT string_agg(note, ',') FROM $t"), 'new,new', "backend $t: exactly the old rows gone");
}

# ---- the log: one row per policy, exact counts and cutoffs
my %log = map { my @f = split /\|/; $f[0] => { status => $f[1], rows => $f[2], days => $f[3], error => $f[4] } }
    split /\n/, psql($dsn, "SELECT data_type, status, rows_affected,"
                    . " round(extract(epoch FROM started_at - cutoff) / 86400), coalesce(error, '')"
                    . " FROM gdpr_audit_log WHERE action = 'automated_deletion'");
is(scalar(keys %log), 11, 'one log row per policy');
for my $dt (sort keys %expect) {
    is($log{$dt}{rows}, $expect{$dt}, "log: $dt rows_affected $expect{$dt}");
    is($log{$dt}{status}, 'completed', "log: $dt completed");
    is($log{$dt}{days}, $days{$dt}, "log: $dt cutoff = start - $days{$dt} days");
}
is($log{error_logs}{status}, 'failed', 'log: error_logs failed');
like($log{error_logs}{error}, qr/error_logs/, 'log: error_logs error text');

# ---- a second run finds nothing more
($sum, $rc) = Insite::GDPRWorker::retention_now($w, 0);
is(join(',', map { $_->{rows} } grep { $_->{status} eq 'completed' } @{ $sum->{policies} }), join(',', (0) x 10),
   'a second run deletes nothing');
is(psql($dsn, "SELECT count(*) FROM gdpr_audit_log WHERE action = 'automated_deletion'"), 22, 'and logs its runs');

done_testing();
