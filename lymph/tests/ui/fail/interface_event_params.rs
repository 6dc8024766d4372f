use lymph::{Context, Event};

struct Echo;

#[lymph::interface]
impl Echo {
    #[event("a.b")]
    async fn no_event(&self, ctx: &Context) -> lymph::Result<()> {
        let _ = ctx;
        Ok(())
    }

    #[event("a.b")]
    async fn two_events(&self, event: Event, other: Event) -> lymph::Result<()> {
        let _ = (event, other);
        Ok(())
    }
}

fn main() {}
