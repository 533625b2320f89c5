//! The demo zone `heimdall demo` serves, also used by the tests of authoritative mode.

/// The demo zone's apex.
pub const DEMO_ORIGIN: &str = "demo.heimdall.test.";

/// A name the demo zone does not have (NXDOMAIN with the SOA).
pub const DEMO_NXDOMAIN: &str = "nothere.demo.heimdall.test.";

/// A name that exists without records of its own (NODATA with the SOA for any type).
pub const DEMO_NODATA: &str = "lab.demo.heimdall.test.";

/// The demo zone file: SOA, NS, A, AAAA, a CNAME chain, MX and TXT.
pub const DEMO_ZONE: &str = r#"; The Heimdall demo zone, served by `heimdall demo` from this file.
$ORIGIN demo.heimdall.test.
$TTL 300
@       IN SOA  ns1 hostmaster (
                2026112801 ; serial
                3600       ; refresh
                600        ; retry
                86400      ; expire
                60 )       ; minimum: how long resolvers cache negative answers
        IN NS   ns1
        IN MX   10 mail
        IN TXT  "v=spf1 mx -all"
ns1     IN A    192.0.2.53
www     IN A    192.0.2.10
        IN AAAA 2001:db8::10
web     IN CNAME www            ; web -> www
alias   600 IN CNAME web        ; alias -> web -> www: a chain
mail    IN A    192.0.2.25
        IN AAAA 2001:db8::25
info    IN TXT  "Heimdall demo zone" "answers with the AA flag set"
host.lab IN A   192.0.2.77      ; lab itself has no records: NODATA
"#;
