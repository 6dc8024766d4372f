struct Echo;

#[lymph::interface]
impl Echo {
    #[event]
    async fn bare(&self, event: lymph::Event) -> lymph::Result<()> {
        let _ = event;
        Ok(())
    }

    #[event(sequential)]
    async fn only_options(&self, event: lymph::Event) -> lymph::Result<()> {
        let _ = event;
        Ok(())
    }

    #[event("a..b", "")]
    async fn bad_patterns(&self, event: lymph::Event) -> lymph::Result<()> {
        let _ = event;
        Ok(())
    }
}

fn main() {}
