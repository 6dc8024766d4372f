struct Echo;

#[lymph::interface]
impl Echo {
    #[rpc]
    async fn tuple(&self, (a, b): (u32, u32)) -> lymph::Result<u32> {
        Ok(a + b)
    }

    #[rpc]
    async fn wildcard(&self, _: String) -> lymph::Result<()> {
        Ok(())
    }

    #[rpc]
    async fn by_ref(&self, ref text: String) -> lymph::Result<()> {
        let _ = text;
        Ok(())
    }
}

fn main() {}
