struct Echo;

#[lymph::interface]
impl Echo {
    #[rpc]
    async fn nothing(&self) {}

    #[rpc]
    async fn not_result(&self) -> String {
        String::new()
    }

    #[event("a.b")]
    async fn on_event(&self, event: lymph::Event) {
        let _ = event;
    }
}

fn main() {}
