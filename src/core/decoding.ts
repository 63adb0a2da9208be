/** How captions are decoded. Defaults are BLIP CapFilt's (generate(sample=True) in salesforce/BLIP). */
export interface DecodingOptions {
  strategy: 'nucleus' | 'greedy' | 'beam';
  topP: number;
  topK: number;
  repetitionPenalty: number;
  numBeams: number;
  /** Whole decoder sequence length, counting [DEC] and the prompt ids, as Hugging Face counts it. */
  maxLength: number;
  minLength: number;
  /** Text prompt; "" means no prompt (the sequence starts with [DEC] alone). */
  prompt: string;
  numCaptions: number;
  seed: number;
  temperature: number;
}

export const CAPFILT_DECODING: DecodingOptions = {
  strategy: 'nucleus',
  topP: 0.9,
  topK: 50,
  repetitionPenalty: 1.1,
  numBeams: 3,
  maxLength: 30,
  minLength: 10,
  prompt: 'a picture of ',
  numCaptions: 1,
  seed: 0,
  temperature: 1,
};

/** One synthetic caption. */
export interface Caption {
  /** Decoded text with the prompt removed. */
  text: string;
  /** The whole decoder sequence as Hugging Face returns it: [DEC], prompt ids, generated ids. */
  tokenIds: number[];
}
