use lymph::{Event, Result};

struct Ledger;

#[lymph::interface(name = "ledger")]
impl Ledger {
    #[serial_event("account.entry")]
    async fn without_key(&self, _event: Event) -> Result<()> {
        Ok(())
    }

    #[serial_event("account.entry", key = "account", broadcast)]
    async fn broadcast(&self, _event: Event) -> Result<()> {
        Ok(())
    }

    #[serial_event("account.entry", key = "account", partition_count = 0, colour = "red")]
    async fn bad_options(&self, _event: Event) -> Result<()> {
        Ok(())
    }
}

fn main() {}
