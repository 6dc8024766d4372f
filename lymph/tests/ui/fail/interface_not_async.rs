struct Echo;

#[lymph::interface]
impl Echo {
    #[rpc]
    fn echo(&self, text: String) -> lymph::Result<String> {
        Ok(text)
    }

    #[event("a.b")]
    fn on_event(&self, event: lymph::Event) -> lymph::Result<()> {
        let _ = event;
        Ok(())
    }
}

fn main() {}
