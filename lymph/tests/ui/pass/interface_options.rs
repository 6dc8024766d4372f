//! `name`, `version` and `crate`, including a renamed lymph crate.

extern crate lymph as renamed;

use lymph::__private::{Client, Interface};

struct Echo;

#[lymph::interface(name = "echo", version = "1.2.0", crate = "::lymph")]
impl Echo {
    #[rpc]
    async fn echo(&self, text: String) -> lymph::Result<String> {
        Ok(text)
    }
}

struct Other;

#[renamed::interface(crate = "renamed", version = "0.10.20")]
impl Other {}

fn main() {
    let spec = Echo.spec();
    assert_eq!((spec.name, spec.version), ("echo", Some("1.2.0")));
    assert_eq!(EchoClient::SERVICE, "echo");
    let spec = Other.spec();
    assert_eq!((spec.name, spec.version), ("other", Some("0.10.20")));
    assert!(spec.methods.is_empty() && spec.event_handlers.is_empty());
    assert_eq!(OtherClient::SERVICE, "other");
}
