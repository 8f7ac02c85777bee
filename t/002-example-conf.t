# nginx.conf.example is valid and loads every insite module (nginx -t).
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use File::Basename qw(dirname);
use File::Temp qw(tempdir);
use Cwd qw(abs_path);
use Insite::Services qw(run_cmd);

my $root = abs_path(dirname(__FILE__) . '/..');
my ($core) = grep { m{/ngx_http_insite_module\.so$} }
             split ' ', $ENV{TEST_NGINX_LOAD_MODULES} // '';
plan skip_all => 'TEST_NGINX_LOAD_MODULES names no ngx_http_insite_module.so'
    unless $core;

my $prefix = tempdir('insite-example-XXXXXX', TMPDIR => 1, CLEANUP => 1);
mkdir "$prefix/logs";
symlink dirname($core), "$prefix/modules" or die "symlink: $!";

my $nginx = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
my ($out, $status) = run_cmd(30, $nginx, '-t', '-p', "$prefix/",
                             '-c', "$root/nginx.conf.example");
is($status, 0, 'nginx -t accepts nginx.conf.example') or diag $out;
like($out, qr/test is successful/, 'nginx says the test is successful');
unlike($out, qr/\[(emerg|alert|warn)\]/, 'no warnings') or diag $out;

open my $fh, '<', "$root/nginx.conf.example" or die $!;
my @loaded = map { m{load_module\s+modules/(\S+)\.so;} ? $1 : () } <$fh>;
is_deeply(\@loaded, [qw(ngx_http_insite_module ngx_http_insite_ws_module
                        ngx_http_insite_gateway_module
                        ngx_http_insite_gdpr_module)],
          'the example loads the core first, then all three modules');

done_testing;
