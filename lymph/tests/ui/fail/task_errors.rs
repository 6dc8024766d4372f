use lymph::Result;

struct Jobs;

#[lymph::interface(name = "jobs")]
impl Jobs {
    #[task]
    async fn returns_a_value(&self) -> Result<u32> {
        Ok(1)
    }

    #[task(retry = 3)]
    async fn unknown_option(&self) -> Result<()> {
        Ok(())
    }

    #[task]
    async fn pattern_parameter(&self, (a, b): (u32, u32)) -> Result<()> {
        let _ = (a, b);
        Ok(())
    }
}

fn main() {}
