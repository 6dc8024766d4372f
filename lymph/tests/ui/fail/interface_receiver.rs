struct Echo;

#[lymph::interface]
impl Echo {
    #[rpc]
    async fn no_self(text: String) -> lymph::Result<String> {
        Ok(text)
    }

    #[rpc]
    async fn by_value(self, text: String) -> lymph::Result<String> {
        Ok(text)
    }

    #[rpc]
    async fn by_mut(&mut self, text: String) -> lymph::Result<String> {
        Ok(text)
    }

    #[event("a.b")]
    async fn on_event(event: lymph::Event) -> lymph::Result<()> {
        let _ = event;
        Ok(())
    }
}

fn main() {}
