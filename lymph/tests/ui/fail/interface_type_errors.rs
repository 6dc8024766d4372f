//! Errors in the generated code point at the user's types. (Only a parameter type here: an
//! unserializable return type gives the same kind of error, but its notes quote lymph-core's
//! source lines, which would make this file break whenever lymph-core changes.)

struct Echo;

struct NotSerde;

#[lymph::interface]
impl Echo {
    #[rpc]
    async fn takes(&self, value: NotSerde) -> lymph::Result<()> {
        let _ = value;
        Ok(())
    }
}

fn main() {}
