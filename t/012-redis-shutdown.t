# A graceful shutdown (reload) waits for requests that wait on Redis: a
# publish sent while Redis is frozen is answered after the reload, and the
# old worker does not exit with its socket open.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Insite::Services qw(start_redis);
use Insite::Nginx;

my $redis = start_redis();
my $ngx = Insite::Nginx->new(
    http   => "    insite_redis 127.0.0.1:" . $redis->port . " command_timeout=3s;",
    server => "        location /pub { insite_ws_publish; }",
);

# both workers connected
for (1 .. 50) {
    last if $ngx->request('POST', '/pub?channel=warm', body => '{"a":1}')->{status} == 201;
    select undef, undef, undef, 0.1;
}

$redis->freeze;
pipe(my $rd, my $wr) or die;
my $pid = fork // die "fork: $!";
if ($pid == 0) {
    close $rd;
    my $r = $ngx->request('POST', '/pub?channel=a', body => '{"a":1}', timeout => 8);
    print $wr ($r->{status} // 'none'), "\n";
    exit 0;
}
close $wr;

select undef, undef, undef, 0.5;       # the publish is waiting on Redis
$ngx->reload;
select undef, undef, undef, 0.5;       # the old workers are shutting down
$redis->thaw;

my $status = <$rd>;
waitpid $pid, 0;
chomp $status;
is($status, '201', 'the publish in flight during the reload is answered');

select undef, undef, undef, 1;
$ngx->stop;
$ngx->check_log('no worker exits with a socket open');

done_testing;
