//! A GGUF model with a chat template: the server renders `messages` with the model's own
//! template (not the plain join used for base models), and a template that refuses the
//! conversation is a 400 on `messages`. The model is stories260K converted to GGUF with a
//! template stored in the file.

mod common;

use std::sync::Arc;

use common::*;
use serde_json::json;
use sotto_engine::convert::{ConvertOptions, Quantization, llama2c_to_gguf};
use sotto_engine::{ChatMessage, GenerateParams, LoadOptions, Model};
use sotto_openai::{ApiState, BuiltinBackend};

/// ChatML, but refusing a conversation whose last message is not the user's.
const TEMPLATE: &str = "{% if messages[-1]['role'] != 'user' %}{{ raise_exception('last message must be the user') }}{% endif %}{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

fn templated_model() -> Arc<Model> {
    let dir = model_dir();
    let ckpt = std::fs::read(dir.join("stories260K.bin")).expect("checkpoint");
    let tok = std::fs::read(dir.join("tok512.bin")).expect("tokenizer");
    let opts = ConvertOptions {
        quantize: Quantization::F32,
        name: "stories260K-chat".into(),
        chat_template: Some(TEMPLATE.into()),
    };
    let gguf = llama2c_to_gguf(&ckpt, &tok, &opts).expect("convert");
    Arc::new(Model::from_gguf_bytes(&gguf, &LoadOptions::default()).expect("load"))
}

fn greedy(model: &Model, prompt: &str) -> String {
    let params = GenerateParams {
        max_tokens: 40,
        temperature: 0.0,
        ..Default::default()
    };
    let mut out = String::new();
    model
        .generate(prompt, &params, &mut |p| {
            out.push_str(p);
            std::ops::ControlFlow::Continue(())
        })
        .expect("generate");
    out
}

#[tokio::test]
async fn messages_are_rendered_with_the_models_template() {
    let model = templated_model();
    assert_eq!(model.chat_template(), Some(TEMPLATE));
    let base = start(ApiState::new(Arc::new(BuiltinBackend::new(
        model.clone(),
        "chat",
    ))))
    .await;
    let msgs = [("system", "Tell a story."), ("user", "Once upon a time")];
    let body = json!({
        "model": "chat",
        "messages": msgs.iter().map(|(r, c)| json!({"role": r, "content": c})).collect::<Vec<_>>(),
        "temperature": 0,
        "max_tokens": 40,
    });
    let (status, resp) = post_chat(&base, &body).await;
    assert_eq!(status, 200, "{resp}");
    let content = resp["choices"][0]["message"]["content"].as_str().unwrap();

    // Exactly what the engine produces for the template's rendering …
    let rendered = model
        .render_chat(
            &msgs
                .iter()
                .map(|(r, c)| ChatMessage {
                    role: (*r).into(),
                    content: (*c).into(),
                })
                .collect::<Vec<_>>(),
        )
        .unwrap()
        .unwrap();
    assert_eq!(
        rendered,
        "<|im_start|>system\nTell a story.<|im_end|>\n<|im_start|>user\nOnce upon a time<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(content, greedy(&model, &rendered));
    // … and not the plain join a model without a template gets.
    assert_ne!(content, greedy(&model, "Tell a story.\nOnce upon a time"));
    assert_eq!(
        resp["usage"]["prompt_tokens"].as_u64().unwrap() as usize,
        model.count_tokens(&rendered)
    );
}

#[tokio::test]
async fn a_conversation_the_template_refuses_is_a_400() {
    let base = start(ApiState::new(Arc::new(BuiltinBackend::new(
        templated_model(),
        "chat",
    ))))
    .await;
    let body = json!({
        "model": "chat",
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "secret words"}],
    });
    let (status, resp) = post_chat(&base, &body).await;
    assert_eq!(status, 400, "{resp}");
    assert_eq!(resp["error"]["param"], "messages");
    assert!(!resp.to_string().contains("secret words"));
}
