#!/usr/bin/perl
# A minimal SMSC written with Debian's Net::SMPP (libnet-smpp-perl), used by the interop test as
# "an SMSC this project did not write". It accepts binds, answers submit_sm with a message id,
# logs every submit_sm as one JSON line, and sends a delivery receipt (receipt text plus the
# receipted_message_id TLV) for each. Usage: net_smpp_smsc.pl PORT LOGFILE
use strict;
use warnings;
use Net::SMPP;
use IO::Handle;

my ($port, $log_path) = @ARGV;
die "usage: $0 PORT LOGFILE\n" unless $port && $log_path;
open(my $log, '>>', $log_path) or die "cannot open $log_path: $!";
$log->autoflush(1);
STDOUT->autoflush(1);

my $listen = Net::SMPP->new_listen('127.0.0.1', port => $port, smpp_version => 0x34) or die "listen: $!";
print "listening on $port\n";
my $next_id = 1000;

sub json_str { my $s = shift; $s =~ s/(["\\])/\\$1/g; return "\"$s\""; }

while (1) {
    my $smpp = $listen->accept or next;
    while (1) {
        my $pdu = $smpp->read_pdu() or last;
        my $cmd = $pdu->{cmd};
        if ($cmd == Net::SMPP::CMD_bind_transceiver) {
            $smpp->bind_transceiver_resp(seq => $pdu->{seq}, system_id => 'PERLSMSC', async => 1);
        } elsif ($cmd == Net::SMPP::CMD_enquire_link) {
            $smpp->enquire_link_resp(seq => $pdu->{seq}, async => 1);
        } elsif ($cmd == Net::SMPP::CMD_unbind) {
            $smpp->unbind_resp(seq => $pdu->{seq}, async => 1);
            last;
        } elsif ($cmd == Net::SMPP::CMD_submit_sm) {
            my $id = sprintf("P%d", $next_id++);
            $smpp->submit_sm_resp(seq => $pdu->{seq}, message_id => $id, async => 1);
            print $log "{" . join(",",
                "\"id\":" . json_str($id),
                "\"dest\":" . json_str($pdu->{destination_addr}),
                "\"src\":" . json_str($pdu->{source_addr}),
                "\"dc\":" . $pdu->{data_coding},
                "\"esm\":" . $pdu->{esm_class},
                "\"sm\":" . json_str(unpack("H*", $pdu->{short_message}))) . "}\n";
            my $text = "id:$id sub:001 dlvrd:001 submit date:2611250000 done date:2611250000 stat:DELIVRD err:000 text:";
            $smpp->deliver_sm(source_addr => $pdu->{destination_addr}, destination_addr => $pdu->{source_addr},
                              esm_class => 0x04, short_message => $text,
                              receipted_message_id => "$id\0", message_state => pack('C', 2), async => 1);
        }
        # deliver_sm_resp and anything else: nothing to do
    }
    $smpp->close();
}
