/**
 * English text written for this project, used to learn the merges of the tokenizer that
 * `flexmem init` gives a random checkpoint. Any text works; this one is plain prose with
 * numbers and punctuation so that common words become single tokens.
 */
export const SAMPLE_TEXT = `The people of the United States met in their towns and cities to talk about the year that had passed.
They spoke of the work that was done and of the work that was still to come. In the spring the rivers
rose, and in the summer the fields were green with corn and wheat. The Congress met in the autumn, and
the President said that the nation was strong, that its people were free, and that its future would be
written by those who worked for it. There were 13 states at first, then 20, then 48, and in time 50.
Each of them sent men and women to speak for them, and each of those voices was heard.

A language model reads a sequence of tokens and guesses the next one. Some of what it knows is
computed from the context, and some of it is simply read from memory: a table with one row for
every token, written once and looked up many times. When the table is kept in a bucket far from
the server, the rows that are needed most are kept close, and the rest are fetched when asked for.
This is how a small server can hold a large model: the knowledge is read, the intelligence is computed.

We hold these truths to be plain: that a good tool should be simple to use, that it should tell you
clearly when something is wrong, and that it should never lose your work. In the year 1800 there were
fewer than six million people in the country; by 1900 there were more than seventy-six million. The
growth of the cities, the building of the railroads, and the opening of the West changed the way that
people lived and worked. It is the duty of the government to protect the rights of all its citizens,
to provide for the common defense, and to promote the general welfare of the people.

"What is the time?" she asked. "It is half past nine," he said, "and the train will leave at ten."
They walked to the station together, past the old church, the market, and the bank on the corner.`;
