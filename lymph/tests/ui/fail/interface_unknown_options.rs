struct Echo;

#[lymph::interface(nmae = "echo", "echo")]
impl Echo {
    #[rpc(timeout = 3)]
    async fn echo(&self, text: String) -> lymph::Result<String> {
        Ok(text)
    }

    #[event("a.b", active = false, sequential = 1, retry = "3", queue_name = q)]
    async fn on_event(&self, event: lymph::Event) -> lymph::Result<()> {
        let _ = event;
        Ok(())
    }

    #[rpc(raises = [1])]
    async fn raises(&self) -> lymph::Result<()> {
        Ok(())
    }

    #[rpc]
    #[event("a.b")]
    async fn both(&self, event: lymph::Event) -> lymph::Result<()> {
        let _ = event;
        Ok(())
    }

    #[rpc]
    const NOT_A_METHOD: u32 = 1;
}

fn main() {}
