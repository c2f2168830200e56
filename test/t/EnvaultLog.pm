# EnvaultLog: envault's access records as they appear in a server log.
#
#   use FindBin;
#   use lib $FindBin::RealBin;
#   use EnvaultLog;
#
# access_lines($node, $offset)  the "envault access: {json}" lines of the
#                               node's server log from byte $offset on, in
#                               order, each decoded into a hash of the
#                               record's fields (the columns of
#                               envault.access_log, and "database"), with
#                               the whole log line under "_line"; dies on a
#                               line that does not hold one JSON object
# wait_for_backend_lines($node, $offset, $pid, $count)
#                               poll until the lines of backend $pid count
#                               $count decryptions or more; returns those
#                               lines (an array ref), or undef after the
#                               default timeout
#
# On a hot standby, and without shared_preload_libraries, envault writes
# each access record to the server log as one line: the log line prefix,
# "LOG:  envault access: " and a JSON object (src/accesslog.c,
# al_log_record).

package EnvaultLog;

use strict;
use warnings;

use Exporter 'import';
use JSON::PP;
use PostgreSQL::Test::Utils;
use Time::HiRes qw(usleep);

our @EXPORT = qw(access_lines wait_for_backend_lines);

my $json = JSON::PP->new->utf8;

sub access_lines
{
	my ($node, $offset) = @_;
	my @records;
	foreach my $line (split /\n/, slurp_file($node->logfile, $offset // 0))
	{
		next unless $line =~ /envault access: /;
		die "not an access record line: $line"
		  unless $line =~ /\bLOG:  envault access: (\{.*\})\z/;
		my $r = eval { $json->decode($1) };
		die "access record line is not valid JSON ($@): $line"
		  unless ref $r eq 'HASH';
		$r->{_line} = $line;
		push @records, $r;
	}
	return @records;
}

sub wait_for_backend_lines
{
	my ($node, $offset, $pid, $count) = @_;
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	while (1)
	{
		my @mine = grep { $_->{backend_pid} == $pid } access_lines($node, $offset);
		my $n = 0;
		$n += $_->{count} foreach @mine;
		return \@mine if $n >= $count;
		return undef if time() > $deadline;
		usleep(50_000);
	}
}

1;
