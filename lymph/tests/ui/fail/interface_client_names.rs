struct Echo;

#[lymph::interface]
impl Echo {
    #[rpc]
    async fn new(&self) -> lymph::Result<()> {
        Ok(())
    }

    #[rpc]
    async fn proxy(&self) -> lymph::Result<()> {
        Ok(())
    }
}

fn main() {}
