package Insite::GDPRWorker;

# insite-gdpr for the retention, report and incident tests (t/71x): a
# PostgreSQL cluster of the test's own (scripts/services.sh start pg, in a
# temp run dir) with a "backend" database, the shipped data map pointed at
# it, keys, and the worker's environment.

use strict;
use warnings;

use Cwd qw(getcwd);
use Exporter 'import';
use File::Temp ();
use JSON::PP ();
use Time::HiRes qw(time sleep);

use Insite::Services qw(run_cmd);

our @EXPORT_OK = qw(setup psql wait_for slurp spew);

my $json = JSON::PP->new->utf8->canonical;

sub slurp { local (@ARGV, $/) = @_; my $d = <>; $d // '' }
sub spew { my ($f, $d) = @_; open my $fh, '>', $f or die "$f: $!"; print $fh $d; close $fh }

sub wait_for {
    my ($secs, $cond) = @_;
    my $deadline = time + $secs;
    while (time < $deadline) { return 1 if $cond->(); sleep 0.1 }
    return $cond->();
}

sub psql {
    my ($dsn, $sql) = @_;
    my ($o, $r) = run_cmd(60, 'psql', $dsn, '-X', '-qtA', '-v', 'ON_ERROR_STOP=1', '-c', $sql);
    die "psql: $o" if $r;
    chomp $o;
    return $o;
}

# Returns { root, bin, tmp, dsn, bdsn, map, env => {...} }; the cluster stops
# at exit.  %opt: map => sub { $map } edits the data map before it is written.
sub setup {
    my (%opt) = @_;
    my $root = getcwd();
    my $bin = $ENV{INSITE_GDPR_BIN} // "$root/build/bin/insite-gdpr";
    $bin = "$root/$bin" unless $bin =~ m{^/};
    my $tmp = File::Temp::tempdir('insite-gdpr-t-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    chmod 0755, $tmp;
    mkdir "$tmp/run";
    local $ENV{INSITE_RUN_DIR} = "$tmp/run";
    my ($out, $rc) = run_cmd(120, "$root/scripts/services.sh", 'start', 'pg');
    die "own PostgreSQL did not start:\n$out" if $rc;
    push @Insite::GDPRWorker::clusters, "$tmp/run";
    my %pgenv = slurp("$tmp/run/pg.env") =~ /^(\w+)=(.*)$/mg;
    my $dsn = $pgenv{INSITE_PG_DSN};
    (my $bdsn = $dsn) =~ s{/insite$}{/backend};
    run_cmd(20, 'psql', '-X', '-h', '127.0.0.1', '-p', $pgenv{INSITE_PG_PORT}, '-U', 'postgres', '-d', 'postgres',
            '-qc', 'CREATE DATABASE backend OWNER insite');
    my $map = $json->decode(slurp("$root/workers/gdpr/datamap.json"));
    $map->{databases}{backend} = $bdsn;
    $opt{map}->($map) if $opt{map};
    spew("$tmp/map.json", $json->encode($map));
    spew("$tmp/psn.key", "0123456789abcdef0123456789abcdef");
    run_cmd(10, 'openssl', 'genpkey', '-algorithm', 'ed25519', '-out', "$tmp/sign.pem");
    run_cmd(10, 'openssl', 'pkey', '-in', "$tmp/sign.pem", '-pubout', '-out', "$tmp/sign.pub");
    my %env = (
        INSITE_PG_DSN => $dsn, INSITE_PG_MIGRATIONS_DIR => "$root/workers/migrations",
        INSITE_GDPR_DATA_MAP => "$tmp/map.json", INSITE_GDPR_PSEUDONYM_KEY => "$tmp/psn.key",
        INSITE_GDPR_SIGNING_KEY => "$tmp/sign.pem", INSITE_GDPR_RETENTION_TIME => '',
        INSITE_KAFKA_BOOTSTRAP => $ENV{INSITE_KAFKA_BOOTSTRAP} // '127.0.0.1:9',
        INSITE_KAFKA_SPOOL_DIR => "$tmp/spool", INSITE_REDIS_PORT => 9,
    );
    return { root => $root, bin => $bin, tmp => $tmp, dsn => $dsn, bdsn => $bdsn, pgport => $pgenv{INSITE_PG_PORT},
             env => \%env };
}

END {
    local $?;
    for my $run (@Insite::GDPRWorker::clusters) {
        local $ENV{INSITE_RUN_DIR} = $run;
        run_cmd(60, getcwd() . '/scripts/services.sh', 'stop', 'pg');
    }
}

# insite-gdpr --retention-now [--dry-run] with the env (+ %extra): (stdout
# JSON decoded or undef, exit code, stderr text)
sub retention_now {
    my ($w, $dry, %extra) = @_;
    my %env = (%{ $w->{env} }, %extra);
    my $cmd = join ' ', map { "$_='$env{$_}'" } sort keys %env;
    my $args = $dry ? '--retention-now --dry-run' : '--retention-now';
    my $out = `env $cmd $w->{bin} $args 2>$w->{tmp}/now.err`;
    my $rc = $? >> 8;
    return (eval { $json->decode($out) }, $rc, slurp("$w->{tmp}/now.err"));
}

# The compliance report's tests: migrations, seed_report, then the worker's
# API with auditd's checkpoint key; returns its port (the worker is killed
# at exit).  Dies when it does not listen.
our @api_pids;
sub report_api {
    my ($w) = @_;
    retention_now($w, 1);                          # migrations
    seed_report($w);
    my $api = Insite::Services::free_port();
    push @api_pids, Insite::Services::spawn($w->{bin}, { %{ $w->{env} }, INSITE_GDPR_HTTP_PORT => $api,
                                            INSITE_GDPR_AUDIT_PUBLIC_KEY => "$w->{tmp}/audit.pub" },
                                            "$w->{tmp}/gdpr.log");
    Insite::Services::wait_port($api, 20) or die "insite-gdpr does not listen:\n" . slurp("$w->{tmp}/gdpr.log");
    return $api;
}
END { kill 'KILL', $_ for @api_pids }

1;

package Insite::GDPRWorker;

# Known data for the compliance report in March 2025 (and a little outside
# it), with three auditd checkpoints signed by $w->{tmp}/audit.pem, the
# third one tampered.  The expected figures are in t/713.
sub seed_report {
    my ($w) = @_;
    my $dsn = $w->{dsn};
    my $tmp = $w->{tmp};
    Insite::Services::run_cmd(10, 'openssl', 'genpkey', '-algorithm', 'ed25519', '-out', "$tmp/audit.pem");
    Insite::Services::run_cmd(10, 'openssl', 'pkey', '-in', "$tmp/audit.pem", '-pubout', '-out', "$tmp/audit.pub");
    my @rows;
    # chain 0: seq 1..10 (u1 reads, days 1 and 2); chain 1: seq 1..9 without 5
    for my $s (1 .. 10) {
        my $day = $s <= 4 ? '01' : '02';
        my ($u, $t) = $s <= 8 ? ('u1', 'read') : $s == 9 ? ('u1', 'export') : ('u3', 'delete');
        push @rows, "('2025-03-$day 10:00:00'::timestamptz + interval '$s second', '$u', '$t', '0', $s)";
    }
    for my $s (grep { $_ != 5 } 1 .. 9) {
        my ($u, $t) = $s <= 6 ? ('u2', 'write') : ('u3', 'delete');
        $t = 'write' if $s == 9;
        $u = 'u2' if $s == 9;
        push @rows, "('2025-03-15 12:00:00'::timestamptz + interval '$s second', '$u', '$t', '1', $s)";
    }
    psql($dsn, "INSERT INTO gdpr_audit_trail (id, ts, user_id, access_type, status, result, worker, seq, prev_hash, hash, source, record)"
         . " SELECT gen_random_uuid(), v.ts, v.u, v.t, 200, true, v.w, v.s, 'x', 'y', 't', '{}' FROM (VALUES "
         . join(',', @rows) . ") v(ts, u, t, w, s);"
         # outside the period
         . " INSERT INTO gdpr_audit_trail (id, ts, user_id, access_type, status, result, worker, seq, prev_hash, hash, source, record)"
         . " VALUES (gen_random_uuid(), '2025-04-01 00:00:00', 'u9', 'read', 200, true, '0', 11, 'x', 'y', 't', '{}'),"
         . " (gen_random_uuid(), '2025-02-28 23:59:59', 'u9', 'read', 200, true, '0', 0, 'x', 'y', 't', '{}')");
    psql($dsn, join ';',
        "INSERT INTO gdpr_deletion_requests (id, user_pseudonym, status, requested_at) VALUES"
        . " ('00000000-0000-4000-8000-000000000001', 'p1', 'completed', '2025-03-03'),"
        . " ('00000000-0000-4000-8000-000000000002', 'p2', 'completed', '2025-03-04'),"
        . " ('00000000-0000-4000-8000-000000000003', 'p3', 'failed', '2025-03-05'),"
        . " ('00000000-0000-4000-8000-000000000004', 'p4', 'cancelled', '2025-03-06'),"
        . " ('00000000-0000-4000-8000-000000000005', 'p5', 'completed', '2025-04-06')",
        "INSERT INTO gdpr_deletion_steps (request_id, target, action, rows) SELECT id, t, a, r FROM gdpr_deletion_requests,"
        . " (VALUES ('pg:a', 'delete', 3), ('pg:b', 'anonymize', 2), ('pg:c', 'retain', 7)) v(t, a, r)",
        "INSERT INTO user_consents (user_id, consent_type, granted, policy_version) VALUES"
        . " ('c1', 'analytics', true, '1'), ('c2', 'analytics', true, '1'), ('c3', 'analytics', true, '1'),"
        . " ('c4', 'analytics', false, '1'), ('c1', 'marketing', true, '1'), ('c2', 'marketing', false, '1'),"
        . " ('c3', 'marketing', false, '1')",
        "INSERT INTO user_consent_events (user_id, consent_type, granted, policy_version, created_at) VALUES"
        . " ('c1', 'analytics', true, '1', '2025-03-02'), ('c2', 'analytics', true, '1', '2025-03-02'),"
        . " ('c3', 'analytics', true, '1', '2025-03-03'), ('c4', 'analytics', true, '1', '2025-03-03'),"
        . " ('c4', 'analytics', false, '1', '2025-03-04'), ('c1', 'marketing', true, '1', '2025-03-04'),"
        . " ('c2', 'marketing', false, '1', '2025-03-05'), ('c3', 'marketing', false, '1', '2025-03-05'),"
        . " ('c1', 'analytics', false, '1', '2025-05-01')",
        "INSERT INTO gdpr_data_exports (id, user_id, status, requested_at, ready_at) VALUES"
        . " (gen_random_uuid(), 'e1', 'ready', '2025-03-10 10:00:00', '2025-03-10 10:01:00'),"
        . " (gen_random_uuid(), 'e2', 'expired', '2025-03-11 10:00:00', '2025-03-11 10:02:00'),"
        . " (gen_random_uuid(), 'e3', 'pending', '2025-03-12 10:00:00', NULL),"
        . " (gen_random_uuid(), 'e4', 'ready', '2025-06-12 10:00:00', '2025-06-12 11:00:00')",
        "INSERT INTO security_incidents (detected_at, source, kind, severity) VALUES"
        . " ('2025-03-07', 't', 'x', 'HIGH'), ('2025-03-08', 't', 'x', 'HIGH'), ('2025-03-09', 't', 'x', 'MEDIUM'),"
        . " ('2025-03-09', 't', 'x', 'CRITICAL'), ('2025-02-09', 't', 'x', 'LOW')",
        "INSERT INTO gdpr_audit_log (action, data_type, target, cutoff, rows_affected, status, started_at) VALUES"
        . " ('automated_deletion', 'price_history', 'stock_prices', '2023-03-01', 100, 'completed', '2025-03-20'),"
        . " ('automated_deletion', 'price_history', 'stock_prices', '2023-03-02', 0, 'failed', '2025-03-21'),"
        . " ('automated_deletion', 'social_posts', 'social_posts', '2024-09-01', 5, 'completed', '2025-03-20'),"
        . " ('automated_deletion', 'social_posts', 'social_posts', '2024-09-01', 9, 'completed', '2025-04-20'),"
        . " ('retention_policy_updated', 'social_posts', 'social_posts', NULL, 0, 'completed', '2025-03-20')",
    );
    # checkpoints: signed payloads, each naming its predecessor
    my $prev = 'null';
    for my $id (1 .. 3) {
        my $payload = qq({"created_at":"2025-03-2${id}T00:00:00.000Z","heads":[{"chain":"0","hash":"y","seq":$id}],"id":$id,"previous":$prev,"source":"t"});
        spew("$tmp/cp", $payload);
        my ($sig) = Insite::Services::run_cmd(10, 'sh', '-c', "openssl pkeyutl -sign -inkey $tmp/audit.pem -rawin -in $tmp/cp | od -An -vtx1 | tr -d ' \\n'");
        $payload =~ s/"seq":3/"seq":4/ if $id == 3;          # tampered after signing
        (my $q = $payload) =~ s/'/''/g;
        psql($dsn, "INSERT INTO gdpr_audit_checkpoints (source, id, created_at, payload, signature) VALUES ('t', $id, '2025-03-2$id', '$q', '$sig')");
        $prev = qq({"id":$id,"signature":"$sig"});
    }
}

1;
