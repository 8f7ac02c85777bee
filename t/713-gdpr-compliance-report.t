# The compliance report as JSON (docs/gdpr-retention.md): known data seeded
# in March 2025 (Insite::GDPRWorker::seed_report) gives known figures in
# every section, including audit completeness measured from a chain with a
# missing sequence number and checkpoints verified with auditd's key (one
# tampered); an empty period gives zeros; bad parameters give 400 JSON;
# operators only; the numbers' SHA-256 is signed by gdpr.signing_key.

use strict;
use warnings;
use lib 't/lib';

use JSON::PP ();
use Test::More;

use Insite::GDPRWorker qw(psql wait_for slurp spew);
use Insite::Services qw(http_request run_cmd);

plan skip_all => 'INSITE_KAFKA_BOOTSTRAP not set (run under scripts/test.sh)' unless $ENV{INSITE_KAFKA_BOOTSTRAP};
my $w = Insite::GDPRWorker::setup();
plan skip_all => "$w->{bin} not built" unless -x $w->{bin};
my $json = JSON::PP->new->utf8->canonical;

my $api = Insite::GDPRWorker::report_api($w);

sub report {
    my ($q, @h) = @_;
    my $r = http_request($api, 'GET', "/api/v1/gdpr/compliance-report$q", headers => { @h }, timeout => 30);
    $r->{json} = eval { $json->decode($r->{body}) } // {};
    return $r;
}
my @op = ('X-User-Id' => 'dpo', 'X-User-Scopes' => 'gdpr:admin');

# ---- who
is(report('?start_date=2025-03-01&end_date=2025-03-31')->{status}, 401, 'no user: 401');
my $r = report('?start_date=2025-03-01&end_date=2025-03-31', 'X-User-Id' => 'u1', 'X-User-Scopes' => 'openid');
is($r->{status}, 403, 'a user without gdpr:admin: 403');
is($r->{json}{error}, 'insufficient_scope', '403 reason');

# ---- known data, known numbers
$r = report('?start_date=2025-03-01&end_date=2025-03-31&format=json', @op);
is($r->{status}, 200, 'operator: 200');
my $j = $r->{json};
is_deeply($j->{period}, { start_date => '2025-03-01', end_date => '2025-03-31' }, 'period');
like($j->{generated_at}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, 'generated_at');
my $p = $j->{data_processing};
is($p->{users}, 3, 'processing: 3 users');
is($p->{operations}, 18, 'processing: 18 operations (boundary records outside excluded)');
is_deeply($p->{operations_by_access_type}, { read => 8, write => 6, delete => 3, export => 1, other => 0 }, 'processing: by access type');
is(scalar @{ $p->{operations_per_day} }, 31, 'processing: 31 days');
my %day = map { $_->{date} => $_->{operations} } @{ $p->{operations_per_day} };
is_deeply([@day{qw(2025-03-01 2025-03-02 2025-03-15 2025-03-31)}], [4, 6, 8, 0], 'processing: per day');
is_deeply($j->{deletions}, { requests => 4, completed => 2, failed => 1, cancelled => 1, open => 0, rows_deleted => 10 },
          'deletions (retained rows not counted as erased)');
my %c = map { $_->{consent_type} => $_ } @{ $j->{consents}{types} };
is_deeply([@{ $c{analytics} }{qw(granted withheld grant_rate_pct grants_in_period withdrawals_in_period)}], [3, 1, 75, 4, 1], 'consents: analytics');
is_deeply([@{ $c{marketing} }{qw(granted withheld grant_rate_pct grants_in_period withdrawals_in_period)}], [1, 2, 33.33, 1, 2], 'consents: marketing');
is($j->{consents}{changes_in_period}, 8, 'consents: 8 changes in the period');
is_deeply($j->{data_portability}, { exports => 3, ready => 2, failed => 0, expired => 1, pending => 1, average_completion_seconds => 90 },
          'portability');
is_deeply($j->{security_incidents}, { total => 4, by_severity => { LOW => 0, MEDIUM => 1, HIGH => 2, CRITICAL => 1 } }, 'incidents');
my $a = $j->{audit};
is_deeply([@{$a}{qw(entries users chains expected_records shipped_records missing_records completeness_pct)}],
          [18, 3, 2, 19, 18, 1, 94.74], 'audit: completeness measured (one seq missing in chain 1)');
is_deeply($a->{checkpoints}, { total => 3, checked => JSON::PP::true, verified => 2, failed => 1 }, 'audit: checkpoints (one tampered)');
my $ret = $j->{retention};
is_deeply([@{$ret}{qw(runs completed failed rows_deleted)}], [3, 2, 1, 105], 'retention runs');
is_deeply([map { "$_->{data_type}:$_->{runs}:$_->{rows_deleted}" } @{ $ret->{by_data_type} }], ['price_history:2:100', 'social_posts:1:5'],
          'retention per data type');

# ---- integrity: the numbers' hash, signed
my $sha = $j->{integrity}{sha256};
like($sha, qr/^[0-9a-f]{64}$/, 'sha256 of the numbers');
spew("$w->{tmp}/sha", $sha);
spew("$w->{tmp}/sig", pack('H*', $j->{integrity}{signature} // ''));
run_cmd(10, 'openssl', 'pkey', '-in', "$w->{tmp}/sign.pem", '-pubout', '-out', "$w->{tmp}/sign.pub");
my ($out, $rc) = run_cmd(10, 'openssl', 'pkeyutl', '-verify', '-pubin', '-inkey', "$w->{tmp}/sign.pub", '-rawin',
                         '-in', "$w->{tmp}/sha", '-sigfile', "$w->{tmp}/sig");
is($rc, 0, 'the signature of the sha256 verifies with the signing key') or diag($out);
($out) = run_cmd(10, 'sh', '-c', "openssl pkey -pubin -in $w->{tmp}/sign.pub -outform DER | tail -c 32 | sha256sum");
is($j->{integrity}{signing_key_fingerprint}, substr($out, 0, 64), 'fingerprint = SHA-256 of the raw public key');
is(report('?start_date=2025-03-01&end_date=2025-03-31', @op)->{json}{integrity}{sha256}, $sha, 'same numbers, same hash');
psql($w->{dsn}, "INSERT INTO security_incidents (detected_at, source, kind, severity) VALUES ('2025-03-30', 't', 'x', 'LOW')");
isnt(report('?start_date=2025-03-01&end_date=2025-03-31', @op)->{json}{integrity}{sha256}, $sha, 'another number, another hash');

# ---- an empty period: zeros
$j = report('?start_date=2024-01-01&end_date=2024-01-31', @op)->{json};
is($j->{data_processing}{operations}, 0, 'empty: 0 operations');
is(scalar(grep { $_->{operations} == 0 } @{ $j->{data_processing}{operations_per_day} }), 31, 'empty: 31 days of 0');
is_deeply($j->{deletions}, { requests => 0, completed => 0, failed => 0, cancelled => 0, open => 0, rows_deleted => 0 }, 'empty: deletions 0');
is($j->{security_incidents}{total}, 0, 'empty: 0 incidents');
is_deeply([@{ $j->{audit} }{qw(entries expected_records completeness_pct)}], [0, 0, undef], 'empty: audit 0, completeness undefined (null)');
is($j->{retention}{runs}, 0, 'empty: 0 retention runs');
is($j->{data_portability}{average_completion_seconds}, 0, 'empty: average 0');

# ---- bad parameters: 400 JSON
for my $case (['?start_date=2025-02-30', 'start_date'], ['?start_date=2025-3-01', 'start_date'], ['?end_date=abc', 'end_date'],
              ['?start_date=2025-03-02&end_date=2025-03-01', 'after'], ['?format=xml', 'format'],
              ['?start_date=1990-01-01&end_date=2025-01-01', 'at most'],
              ['?start_date=', 'start_date']) {
    $r = report($case->[0], @op);
    is($r->{status}, 400, "$case->[0]: 400");
    is($r->{json}{error}, 'bad_request', "$case->[0]: bad_request");
    like($r->{json}{message} // '', qr/\Q$case->[1]\E/, "$case->[0]: names the cause ($r->{json}{message})");
}
is(report('', @op)->{status}, 200, 'no dates: the last 30 days');
like(http_request($api, 'GET', '/metrics')->{body}, qr/insite_gdpr_compliance_report_seconds_count [1-9]/, 'metric: reports built');

done_testing();
