struct Echo;

#[lymph::interface]
impl Echo {
    #[event("a.b", broadcast, once)]
    async fn on_event(&self, event: lymph::Event) -> lymph::Result<()> {
        let _ = event;
        Ok(())
    }
}

fn main() {}
