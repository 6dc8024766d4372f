struct Echo<T>(T);

#[lymph::interface]
impl<T: Send + Sync + 'static> Echo<T> {
    #[rpc]
    async fn echo(&self, text: String) -> lymph::Result<String> {
        Ok(text)
    }
}

struct Pair<T>(T);

#[lymph::interface]
impl Pair<u32> {}

fn main() {}
